"""PID, name and id formats: parsed once, at the boundary.

A PID is ``{host|0xNNNNN}``: lowercase hex, at least five digits, allocated from one counter
per node so it is never reused while the node runs. A clustered node's PIDs are
``{node@host|0xNNNNN}`` (SPEC 11; :func:`split_host`), their counter starting at the run's
serial base (``actord.core.nodes.serial_base``) so no run reuses an earlier run's PID.
Input is read leniently and written canonically: ``{h|0x3}``, ``{h|0x00003}`` and
``{h|0X00003}`` are one PID, always handled in its canonical spelling ``{h|0x00003}``;
anything else that starts with ``{`` is malformed (INVALID wherever a PID is taken).
Registry names are printable strings (no control characters) of 1 to 255 characters that do
not start with ``{``. Ids (process ids, hosts, services) are ``namespace:name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from actord.errors import InvalidError, NotFoundError

#: the longest registry name (SPEC section 2)
MAX_NAME = 255
#: the prefix of a cluster-wide registry name (SPEC 11)
GLOBAL = "global:"
# serials have at most 16 hex digits (64 bits): longer ones would only make huge ints
_PID_RE = re.compile(r"^\{(?P<host>[^|{}\x00-\x1f\x7f]+)\|0x(?P<serial>[0-9a-f]{5,16})\}$")
_LENIENT_PID_RE = re.compile(
    r"^\{(?P<host>[^|{}\x00-\x1f\x7f]+)\|0[xX](?P<serial>[0-9a-fA-F]{1,16})\}$"
)
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+$")


def format_pid(host: str, serial: int) -> str:
    """The PID string of ``serial`` on ``host``."""
    return f"{{{host}|0x{serial:05x}}}"


def parse_pid(pid: str) -> tuple[str, int] | None:
    """``(host, serial)`` of a PID string in any accepted spelling, or None when it is not one."""
    m = _LENIENT_PID_RE.match(pid)
    if m is None:
        return None
    return m["host"], int(m["serial"], 16)


def split_host(host: str) -> tuple[str | None, str]:
    """``(node, host)`` of a PID's host part: ``"n1@app:main"`` -> ``("n1", "app:main")``;
    a plain host (a single node's, or a local one) has node None."""
    node, at, rest = host.partition("@")
    return (node, rest) if at else (None, host)


def node_of(pid: str) -> str | None:
    """The node a (canonical) PID names, ``"n1"`` of ``"{n1@app:main|0x00001}"``; None for a
    single node's PID."""
    at = pid.find("@")
    if at < 1 or pid[0] != "{":
        return None
    bar = pid.find("|")
    return pid[1:at] if bar < 0 or at < bar else None


def canonical_pid(pid: object) -> str:
    """The canonical spelling of a PID (INVALID when ``pid`` is not one)."""
    if type(pid) is str and _PID_RE.match(pid) is not None and (
        len(pid) - pid.index("|") <= 9 or pid[pid.index("|") + 3] != "0"
    ):
        return pid  # already canonical: at least 5 digits, no extra leading zero
    parsed = parse_pid(pid) if isinstance(pid, str) else None
    if parsed is None:
        raise InvalidError(f"malformed PID {_show(pid)}: expected {{host|0xNNNNN}}")
    return format_pid(*parsed)


def is_pid(value: object) -> bool:
    """True when ``value`` is a well-formed PID string (in any accepted spelling)."""
    return isinstance(value, str) and value.startswith("{") and parse_pid(value) is not None


def is_name(value: object) -> bool:
    """True for a registry name: 1-255 printable characters, not starting with ``{``."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME
        and value[0] != "{"
        and value.isprintable()
    )


def check_name(value: object) -> str:
    """``value`` if it is a registry name, else INVALID saying why."""
    if is_name(value):
        return value  # type: ignore[return-value]
    if not isinstance(value, str) or not value:
        why = "must be a non-empty string"
    elif len(value) > MAX_NAME:
        why = f"longer than {MAX_NAME} characters"
    elif value[0] == "{":
        why = "must not start with {"
    else:
        why = "must not contain control characters"
    raise InvalidError(f"bad name {_show(value)}: {why}")


def is_id(value: object) -> bool:
    """True when ``value`` looks like ``namespace:name``."""
    return isinstance(value, str) and _ID_RE.match(value) is not None


def _show(value: object, limit: int = 60) -> str:
    """``repr`` of a bad value for an error line: escaped, cut at ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def resolve(dest: object, lookup: Callable[[str], str | None]) -> str:
    """The canonical PID ``dest`` names: a PID (INVALID if malformed), or a registry name
    looked up with ``lookup`` (INVALID if not a name, NOT_FOUND if not registered)."""
    if not isinstance(dest, str) or not dest:
        raise InvalidError(f"bad destination {dest!r}: expected a PID or a name")
    if dest[0] == "{":
        return canonical_pid(dest)
    pid = lookup(check_name(dest))
    if pid is None:
        raise NotFoundError(f"no process registered as {dest!r}")
    return pid
