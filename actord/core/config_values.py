"""Config values at a key path: the checks of one value and the one mistake they raise.

Responsibility: the small checks :mod:`actord.core.config_build` applies to single values
(a duration, a choice, references, plain msgpack values, ids, paths), ``msgspec.convert``
with its error in TOML's words, and the TOML spelling of a key path. A mistake is an
:class:`Invalid` (key path, problem), raised where it is found; ``build`` turns it into the
one ``ConfigError`` line ``"<file>: <key path>: <problem>"``.

Invariant: pure: values in, a value or an ``Invalid`` out; no I/O, no state.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Mapping
from typing import TypeVar, cast

import msgspec

from actord.durations import parse_duration
from actord.ids import is_id

KeyPath = tuple[str | int, ...]
_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)


class Invalid(Exception):
    """One mistake at one key path; ``config_build.build`` turns it into the ConfigError line."""

    def __init__(self, path: KeyPath, problem: str) -> None:
        super().__init__(path, problem)
        self.path, self.problem = path, problem


def require(ok: bool, path: KeyPath, problem: str) -> None:
    """Raise ``Invalid(path, problem)`` unless ``ok``."""
    if not ok:
        raise Invalid(path, problem)


_TOML_WORDS = {"str": "string", "int": "integer", "bool": "boolean", "object": "table"}


def convert(value: object, type_: type[_T], path: KeyPath) -> _T:
    """``msgspec.convert``, its error rewritten as a key path and a problem in TOML's words."""
    try:
        return msgspec.convert(value, type_, strict=True)
    except msgspec.ValidationError as e:  # "Expected `int`, got `str` - at `$.backoff.factor`"
        m = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", str(e))
        what, at = (m[1], m[2] or "") if m else (str(e), "")
        sub = path + tuple(int(i) if i else k for k, i in re.findall(r"\.(\w+)|\[(\d+)\]", at))
        field = re.match(r"^Object (contains unknown|missing required) field `(.*)`$", what)
        if field:
            problem = "unknown key" if field[1] == "contains unknown" else "missing required key"
            raise Invalid((*sub, field[2]), problem) from None
        what = re.sub(r"`([^`]*)`", _toml_words, what)
        raise Invalid(sub, what[:1].lower() + what[1:]) from None


def _toml_words(m: re.Match[str]) -> str:
    """msgspec's type names in TOML's words: `int | str | null` -> integer or string."""
    return " or ".join(_TOML_WORDS.get(t, t) for t in m[1].split(" | ") if t != "null")


def duration(value: object, path: KeyPath, default: float) -> float:
    if value is None:
        return default
    require(
        not isinstance(value, float),
        path,  # float ms is more likely meant as seconds
        f'bad duration {value!r} (use e.g. "500ms", "5s", "1m" or int ms)',
    )
    try:
        return parse_duration(value)
    except ValueError as e:
        raise Invalid(path, str(e)) from None


def choice(value: str, choices: tuple[_S, ...], path: KeyPath) -> _S:
    require(value in choices, path,
            f"{quote(value)} is not one of " + ", ".join(quote(c) for c in choices))
    return cast(_S, value)


def refs(
    names: tuple[str, ...], known: Mapping[str, object], what: str, path: KeyPath
) -> tuple[str, ...]:
    """``names`` unchanged, once each is known and none is repeated."""
    for i, n in enumerate(names):
        require(n in known, (*path, i), f"unknown {what} {quote(n)}")
        require(n not in names[:i], (*path, i), f"{what} {quote(n)} is listed twice")
    return names




def check_plain(value: object, path: KeyPath) -> None:
    """Refuse what cannot cross a process boundary (SPEC section 2); from TOML: dates, times."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_plain(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_plain(v, (*path, i))
    else:
        require(
            not isinstance(value, datetime.date | datetime.time),
            path,
            "dates and times are not msgpack values; use a string",
        )


def id_path(table: str, name: str) -> KeyPath:
    require(is_id(name), (table, name), "not a namespace:name id")
    return (table, name)


def name_path(table: KeyPath, name: str) -> KeyPath:
    require(bool(name.strip()), (*table, name), "name must not be empty")
    return (*table, name)


def abs_path(value: str, base: str, path: KeyPath) -> str:
    require(bool(value) and "\0" not in value, path, "must be a non-empty path")
    return os.path.abspath(os.path.join(base, value))


def key_path(path: KeyPath) -> str:
    """TOML spelling of a key path: ``services."app:ticker".args[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else quote(part)
            out += f".{key}" if out else key
    return out or "(top level)"


def quote(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


__all__ = [
    "Invalid",
    "KeyPath",
    "abs_path",
    "check_plain",
    "choice",
    "convert",
    "duration",
    "id_path",
    "key_path",
    "name_path",
    "quote",
    "refs",
    "require",
]
