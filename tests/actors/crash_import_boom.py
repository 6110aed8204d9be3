"""A module whose import fails (tests/test_crash_log.py): entry ``crash_import_boom:main``."""

raise RuntimeError("boom at import time")


async def main() -> None:
    """Never reached."""
