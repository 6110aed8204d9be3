"""Actors for the CLI bad-input table (tests/test_cli_bad_input.py)."""

import asyncio
from typing import Any


async def idle(*args: Any) -> None:
    """Wait forever; reads neither inbox nor events (a bystander, or a target to end)."""
    await asyncio.get_running_loop().create_future()


async def returner(*args: Any) -> Any:
    """Return the arguments as received (one argument: itself)."""
    return args[0] if len(args) == 1 else list(args)


async def odd(kind: str) -> Any:
    """A result that is not plain JSON: bytes, non-finite floats, bytes nested in a map."""
    return {
        "bytes": b"\x00\xff",
        "nan": float("nan"),
        "inf": float("inf"),
        "nested": {"k": [b"ab", -float("inf")], 1: "int key"},
    }[kind]


async def failer() -> None:
    """End abnormally with a multi-line message."""
    raise RuntimeError("line one\nline two\x1b[31m")


async def slow(seconds: float) -> str:
    """Return after ``seconds``."""
    await asyncio.sleep(seconds)
    return "done"
