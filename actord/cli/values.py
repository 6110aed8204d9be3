"""What the CLI reads: ARGS and VALUES, parsed and checked before the daemon is asked.

A value is parsed as JSON when it parses, else taken as a string; ``@PATH`` reads it from a
file and ``-`` from stdin (then parsed the same way; bytes that are not UTF-8 are sent as
bytes). ``{"$bytes": "<base64>"}`` anywhere in a value is sent as bytes and ``{"$float":
"nan"|"inf"|"-inf"}`` as that float. Invariant: a value msgpack cannot carry (an int beyond 64
bits, text with lone surrogates such as invalid UTF-8 in argv, nesting deeper than
``MAX_DEPTH``) is a usage error (exit 2) naming the argument, found before connecting.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from typing import Any

from actord.cli.output import EXIT_USAGE, esc, fail

#: deepest nesting of a value the CLI sends (msgpack and the daemon's decoder stop at 511)
MAX_DEPTH = 256
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Usage(Exception):
    """Bad input found before the daemon is asked (exit 2)."""


def parse_value(text: str, label: str) -> Any:
    """One ARG/VALUE: ``@PATH`` (a file), ``-`` (stdin), else the text; JSON when it parses."""
    if text == "-" or (text.startswith("@") and len(text) > 1):
        try:
            data = sys.stdin.buffer.read() if text == "-" else _read(text[1:])
        except OSError as e:
            raise _Usage(f"{label}: cannot read {text}: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data  # not text: sent as bytes
    try:
        value = json.loads(text)
    except RecursionError:
        raise _Usage(f"{label}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        value = text
    return incoming(value, label, 0)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def incoming(value: Any, label: str, depth: int) -> Any:
    """``value`` with ``$bytes``/``$float`` objects decoded; ``_Usage`` for what msgpack
    cannot carry."""
    if depth > MAX_DEPTH:
        raise _Usage(f"{label}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Usage(f"{label}: not valid UTF-8 text: {esc(value)[:60]}") from None
        return value
    if isinstance(value, bool) or value is None or isinstance(value, float | bytes):
        return value
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise _Usage(f"{label}: integer out of the 64-bit range: {str(value)[:40]}")
        return value
    if isinstance(value, list):
        return [incoming(v, label, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            try:
                return base64.b64decode(incoming(value["$bytes"], label, depth), validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise _Usage(f'{label}: "$bytes" must be a base64 string') from None
        if len(value) == 1 and "$float" in value:
            try:
                return _FLOATS[value["$float"]]
            except (KeyError, TypeError):
                raise _Usage(f'{label}: "$float" must be "nan", "inf" or "-inf"') from None
        return {incoming(k, label, depth + 1): incoming(v, label, depth + 1)
                for k, v in value.items()}
    return value


def parse_values(texts: tuple[str, ...], what: str) -> list[Any]:
    if sum(t == "-" for t in texts) > 1:
        raise _Usage(f"{what}: stdin (-) can be read only once")
    return [parse_value(t, f"{what} #{i}") for i, t in enumerate(texts, 1)]


def checked(check: Any, *args: Any) -> Any:
    """``check(*args)``; a usage error ends the CLI (exit 2)."""
    try:
        return check(*args)
    except _Usage as e:
        fail(str(e), EXIT_USAGE)
