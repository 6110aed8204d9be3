"""The records of ``actord trace`` (SPEC 12): their kinds, their shape on the wire, and the
object a trace client gets for each.

A worker records what a traced process does as compact lists (``[ts, kind, ...]``, ``ts`` in
epoch seconds), batched into TRACE frames; the router turns each one it keeps for a client
into a map with :func:`as_dict` (which is also the check of a worker's record: anything
malformed raises ``ValueError``, ``TypeError`` or ``LookupError``)::

    [ts, "send", to, topic, bytes]              {"ts", "kind", "to", "topic", "bytes"}
    [ts, "receive", from, topic, bytes]         {"ts", "kind", "from", "topic", "bytes"}
    [ts, "spawn", child, id, host, flags]       {"ts", "kind", "pid", "id", "host", "link",
                                                 "monitor"}     (flags: wire.SPAWN_* bits)
    [ts, "link" | "unlink" | "monitor" | "unmonitor", pid]      {"ts", "kind", "pid"}
    [ts, "event", event, from, error, reason]   {"ts", "kind", "event", "from", "error",
                                                 "reason"}      (the event's kind, e.g.
                                                 "pid.exit"; error: an EXIT or LINK_DOWN's)
    [ts, "exit", error]                         {"ts", "kind", "error"}  (None: a normal end)

``bytes`` is the size of the message's payload encoded (what a SEND frame carries). Texts are
clipped (:data:`MAX_TOPIC`, :data:`MAX_ERROR` characters) so a TRACE frame of
:data:`MAX_BATCH` records stays inside ``wire.FRAME_ENVELOPE``.
"""

from __future__ import annotations

from typing import Any

from actord.core import wire

#: every kind of record, in the order ``actord trace --help`` lists them
KINDS = ("send", "receive", "spawn", "link", "unlink", "monitor", "unmonitor", "event", "exit")
#: the calls a traced process makes that are recorded (on success, when their reply comes)
CALLS = frozenset({"spawn", "link", "unlink", "monitor", "unmonitor"})
#: how often a worker sends what its traced processes did, in seconds: one frame per loop
#: tick was one more frame for the router per round trip of a traced ping-pong (measured:
#: ~0.6x its rate), one per window is one per many
FLUSH_EVERY = 0.005
#: the most records a worker sends for one process per window; beyond, it only counts them
MAX_BATCH = 256
#: characters of a topic / an error kept in a record
MAX_TOPIC = 128
MAX_ERROR = 200


def clip(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters (marked), None as is."""
    return text if text is None or len(text) <= limit else text[:limit] + "..."


def as_dict(r: list[Any]) -> dict[str, Any]:
    """What a trace client gets for the record ``r`` (raises on a malformed one)."""
    ts, kind = float(r[0]), r[1]
    if kind == "send" or kind == "receive":
        peer, topic, size = r[2:]
        return {"ts": ts, "kind": kind, "to" if kind == "send" else "from": _str(peer),
                "topic": _str(topic), "bytes": _int(size)}
    if kind == "spawn":
        child, id, host, flags = r[2:]
        return {"ts": ts, "kind": kind, "pid": _str(child), "id": _str(id), "host": _str(host),
                "link": bool(_int(flags) & wire.SPAWN_LINK),
                "monitor": bool(flags & wire.SPAWN_MONITOR)}
    if kind in ("link", "unlink", "monitor", "unmonitor"):
        (pid,) = r[2:]
        return {"ts": ts, "kind": kind, "pid": _str(pid)}
    if kind == "event":
        event, from_, error, reason = r[2:]
        return {"ts": ts, "kind": kind, "event": _str(event), "from": _str(from_),
                "error": _opt(error), "reason": _opt(reason)}
    if kind == "exit":
        (error,) = r[2:]
        return {"ts": ts, "kind": kind, "error": _opt(error)}
    raise ValueError(f"unknown trace record kind {kind!r}")


def size(d: dict[str, Any]) -> int:
    """About how many bytes the record ``d`` takes in a reply (its texts plus its keys)."""
    return 96 + sum(len(v) for v in d.values() if type(v) is str)


def _str(x: Any) -> str:
    if type(x) is not str:
        raise TypeError(f"a trace record field is not a str: {x!r:.40}")
    return x


def _opt(x: Any) -> str | None:
    return None if x is None else _str(x)


def _int(x: Any) -> int:
    if type(x) is not int:
        raise TypeError(f"a trace record field is not an int: {x!r:.40}")
    return x
