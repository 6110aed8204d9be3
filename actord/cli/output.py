"""What the CLI writes: values as valid JSON, text on one line, failures as one line + exit code.

Output shows bytes as ``{"$bytes": ...}`` and non-finite floats as ``{"$float": ...}``, so it is
always valid JSON. Text rows escape control characters, so one row is one line. Invariant: every
failure is one line ``actord: ...`` on stderr and one of the exit codes here.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from typing import Any, NoReturn

import click

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """End the CLI: ``message`` as one line ``actord: ...`` on stderr, exit ``code``."""
    click.echo(f"actord: {esc(message)}", err=True)
    sys.exit(code)


def esc(value: object) -> str:
    """``value`` as text on one line: control and other unprintable characters escaped."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape",
                                                         "backslashreplace").decode("ascii")
                   for c in text)


# -- values out --------------------------------------------------------------------------------


def _outgoing(value: Any) -> Any:
    """``value`` with bytes and non-finite floats as ``$bytes``/``$float`` objects."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"}
    if isinstance(value, list | tuple):
        return [_outgoing(v) for v in value]
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else to_json(_outgoing(k))): _outgoing(v)
                for k, v in value.items()}
    return value


def to_json(value: Any) -> str:
    """Valid JSON for any value the daemon sends (see :func:`_outgoing`)."""
    return json.dumps(_outgoing(value), allow_nan=False)
