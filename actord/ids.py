"""PID and id formats.

A PID is ``{host|0xNNNNN}``: lowercase hex, at least five digits, allocated from one counter
per node so it is never reused while the node runs. Ids (process ids, hosts, services) are
``namespace:name``.
"""

from __future__ import annotations

import re

_PID_RE = re.compile(r"^\{(?P<host>[^|{}]+)\|0x(?P<serial>[0-9a-f]{5,})\}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+$")


def format_pid(host: str, serial: int) -> str:
    """The PID string of ``serial`` on ``host``."""
    return f"{{{host}|0x{serial:05x}}}"


def parse_pid(pid: str) -> tuple[str, int] | None:
    """``(host, serial)`` of a PID string, or None when it is not one."""
    m = _PID_RE.match(pid)
    if m is None:
        return None
    return m["host"], int(m["serial"], 16)


def is_pid(value: object) -> bool:
    """True when ``value`` is a well-formed PID string."""
    return isinstance(value, str) and value.startswith("{") and _PID_RE.match(value) is not None


def is_name(value: object) -> bool:
    """True for a registry name: a non-empty str that does not look like a PID."""
    return isinstance(value, str) and bool(value) and value[0] != "{"


def is_id(value: object) -> bool:
    """True when ``value`` looks like ``namespace:name``."""
    return isinstance(value, str) and _ID_RE.match(value) is not None
