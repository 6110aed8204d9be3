"""Duration values: ``"500ms"``, ``"5s"``, ``"1m"``, ``"1h"``, or int milliseconds.

Invariant: every duration in actord (config, cancel deadlines, CLI options) is parsed here,
to float seconds, and a bad one raises ``ValueError`` with a message naming the value.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


def parse_duration(value: object) -> float:
    """Seconds for a duration string or a number of milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: negative")
        return float(value) / 1000.0
    if isinstance(value, str):
        m = _RE.match(value)
        if m:
            return float(m[1]) * _UNITS[m[2]]
    raise ValueError(f"bad duration {value!r} (use e.g. \"500ms\", \"5s\", \"1m\" or int ms)")
