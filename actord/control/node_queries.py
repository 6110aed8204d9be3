"""Questions one node asks the others over NATS request-reply: ``actord ps --cluster`` (SPEC
11), ``actord info`` of another node's process and ``actord top --host`` of another node's
host (SPEC 12).

Only a node with ``[cluster]`` has one. Once the node link is connected (its ``on_connect``
hooks, ours first), every node answers on ``<cluster>.ctl.<node>``::

    request  msgpack {"op": "ps", "from": node, "host": str | None}
    reply    msgpack {"node", "incarnation", "processes": [row, ...], "omitted": n,
                      "known": bool}

    request  msgpack {"op": "info", "from": node, "pid": str}
    reply    msgpack {"node", "info": {SPEC 12's keys} | None}   (None: not alive there)

    request  msgpack {"op": "top", "from": node, "host": str, "sort": str, "limit": int}
    reply    msgpack {"node", "sample": {a top sample, control/top.py} | None}  (None: no
             such host there)

    request  msgpack {"op": "trace", "from": node, "pid": str, "events": [kind] | None,
                      "limit": int, "duration": seconds | None}
    reply    msgpack {"node", "session": int} | {"node", "error": [kind, message]}
    request  msgpack {"op": "trace_read", "from": node, "pid": str, "session": int,
                      "wait": seconds, "stop": bool}
    reply    msgpack {"node", "read": {"records", "missed", "end"}} | {"node", "error": ...}

A trace of another node's process (SPEC 12's ``trace DEST``, SPEC 11's "every command that
takes a DEST"): the traced process's node keeps the session for the asking node, read with
the same long poll as a local one (answered in a task of its own, so a read that waits
never holds the other queries up); a session not read for :data:`TRACE_LEASE` seconds (its
client or its node gone) is closed there.

A row is a ``ps`` row (SPEC 9); ``omitted`` counts the rows cut to fit NATS's max_payload
(said on stderr by the CLI, never silent); ``known`` is False when the node has no such
host. The asking node sends one request to every node that is up (or to the one a
``node@host`` names), all at once, and waits at most :data:`REPLY_WAIT` for each: a node
that does not answer in time, or answers something malformed, is listed in ``missing``,
never waited for longer. Both sides check the other's bytes at the boundary: a malformed
request is dropped and counted (``malformed``, the first logged), a malformed reply counted
(``bad_replies``) and its node reported missing; neither ever raises.

Trust: the NATS credentials are the boundary between nodes (as for frames, router/nodes.py);
the control-socket client's ``daemon.status`` permission was checked on the asking node.
Invariant: requests are answered one at a time (nats-py runs a subscription's callbacks in
turn), so a flood of them costs one ``ps`` at a time, each bounded by :data:`WORKER_WAIT`;
only trace requests are answered in tasks (a read waits), at most
:data:`MAX_REMOTE_TRACES` sessions at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack

from actord import ids
from actord.control.top import MAX_LIMIT, SORTS
from actord.core import trace, wire
from actord.core.nodes import NodeState
from actord.durations import MAX_DURATION
from actord.errors import InvalidError, NotFoundError, ProcessError, from_kind

if TYPE_CHECKING:
    from actord.router import Router
    from actord.router.nodes import NodeLink
    from actord.router.traces import Session

log = logging.getLogger("actord.nodes")

#: seconds the asking node waits for each node's answer
REPLY_WAIT = 2.0
#: seconds an answering node waits for its own workers (a stalled one is listed "stalled")
WORKER_WAIT = 1.0
#: the longest host name a request may carry
MAX_HOST = 256
#: bytes of a reply besides its rows (map keys, node name, counts)
REPLY_OVERHEAD = 256
#: seconds a trace session of another node lives without a read
TRACE_LEASE = 15.0
#: the longest wait of a trace read (the control command's bound)
TRACE_WAIT = 10.0
#: trace sessions other nodes may hold here at once
MAX_REMOTE_TRACES = 256
#: the keys and types of a ps row from another node; anything else in a row is dropped
_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (str,), "id": (str,), "host": (str,), "worker": (int,), "state": (str,),
    "names": (list,), "mailbox": (int, type(None)),
}

#: the keys and types of an ``info`` answer from another node (SPEC 12), all of them required
_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (str,), "id": (str,), "host": (str,), "worker": (int,), "state": (str,),
    "names": (list,), "parent": (str, type(None)), "links": (list,), "monitors": (list,),
    "monitored_by": (list,), "trap_links": (bool, type(None)), "mailbox": (dict, type(None)),
    "sent": (int, type(None)), "received": (int, type(None)),
    "started": (float, int, type(None)), "stack": (list, type(None)),
}
_INFO_STRINGS = ("names", "links", "monitors", "monitored_by", "stack")

_NONE = type(None)
_NUMBER = (int, float)
#: the keys and types of a ``top`` sample from another node (control/top.py), all required
_TOP_NODE: dict[str, tuple[type, ...]] = {
    "node": (str,), "uptime": _NUMBER, "os_pid": (int,), "cpu_seconds": (*_NUMBER, _NONE),
    "rss": (int, _NONE), "processes": (int,), "routed": (int,), "dead_letters": (int,),
}
_TOP_WORKER: dict[str, tuple[type, ...]] = {
    "index": (int,), "os_pid": (int, _NONE), "state": (str,), "processes": (int,),
    "restarts": (int,), "cpu_seconds": (*_NUMBER, _NONE), "rss": (int, _NONE),
    "sent": (int, _NONE), "received": (int, _NONE), "mailbox": (int, _NONE),
    "dead_letters": (int, _NONE),
}
_TOP_PROCESS: dict[str, tuple[type, ...]] = {
    "pid": (str,), "id": (str,), "mailbox": (int,), "sent": (int,), "received": (int,),
    "rate": (*_NUMBER, _NONE), "host": (str,), "worker": (int,), "names": (list,),
}


def check_request(data: bytes) -> tuple[str, Any] | None:
    """``("ps", host)``, ``("info", pid)`` or ``("top", {"host", "sort", "limit"})`` of a
    request's bytes, or None when malformed."""
    try:
        req = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    if not isinstance(req, dict) or not isinstance(req.get("from"), str):
        return None
    op = req.get("op")
    if op in ("trace", "trace_read"):
        return _check_trace_request(req)
    if op == "top":
        host, sort, limit = req.get("host"), req.get("sort"), req.get("limit")
        ok = (isinstance(host, str) and len(host) <= MAX_HOST and sort in SORTS
              and type(limit) is int and 0 <= limit <= MAX_LIMIT)
        return ("top", {"host": host, "sort": sort, "limit": limit}) if ok else None
    if op == "info":
        pid = req.get("pid")
        ok = isinstance(pid, str) and len(pid) <= wire.MAX_ADDRESS
        return ("info", pid) if ok else None
    host = req.get("host")
    if op != "ps" or (host is not None and (not isinstance(host, str) or len(host) > MAX_HOST)):
        return None
    return ("ps", host)


def check_info_reply(data: bytes, node: str) -> tuple[dict[str, Any] | None] | None:
    """``(info,)`` of ``node``'s answer to an ``info`` request (info None: no such live
    process there); None when malformed (not msgpack, another node's, a key missing, extra or
    of the wrong type)."""
    rep = _answer(data, node)
    if rep is None or "info" not in rep:
        return None
    info = rep["info"]
    if info is None:
        return (None,)
    if not isinstance(info, dict) or set(info) != set(_INFO_TYPES):
        return None
    if not all(type(info[k]) in types for k, types in _INFO_TYPES.items()) or info["worker"] < 0:
        return None
    if not all(isinstance(x, str) for k in _INFO_STRINGS for x in info[k] or ()):
        return None
    box = info["mailbox"]
    if box is not None and not all(type(k) is str and type(n) is int for k, n in box.items()):
        return None
    return (info,)


def _answer(data: bytes, node: str) -> dict[Any, Any] | None:
    """A reply's map, when its bytes are msgpack of a map from ``node``; else None."""
    try:
        rep = msgpack.unpackb(data, raw=False)
    except Exception:  # any decoding failure of a peer's bytes is "malformed"
        return None
    return rep if isinstance(rep, dict) and rep.get("node") == node else None


def _check_trace_request(req: dict[Any, Any]) -> tuple[str, Any] | None:
    """A ``trace`` or ``trace_read`` request's checked fields, or None."""
    pid = req.get("pid")
    if not isinstance(pid, str) or len(pid) > wire.MAX_ADDRESS:
        return None
    if req["op"] == "trace_read":
        session, wait, stop = req.get("session"), req.get("wait"), req.get("stop")
        if (type(session) is not int or not isinstance(wait, int | float)
                or isinstance(wait, bool) or not 0 <= wait <= TRACE_WAIT
                or type(stop) is not bool):
            return None
        return "trace_read", {"from": req["from"], "pid": pid, "session": session,
                              "wait": wait, "stop": stop}
    events, limit, duration = req.get("events"), req.get("limit"), req.get("duration")
    if events is not None and (not isinstance(events, list) or not events or not all(
            isinstance(k, str) and k in trace.KINDS for k in events)):
        return None
    if type(limit) is not int or limit < 1:
        return None
    if duration is not None and (not isinstance(duration, int | float)
                                 or isinstance(duration, bool)
                                 or not 0 <= duration <= MAX_DURATION):
        return None
    return "trace", {"from": req["from"], "pid": pid,
                     "kinds": None if events is None else frozenset(events),
                     "limit": limit, "duration": duration}


def check_trace_reply(data: bytes, node: str) -> tuple[str, Any] | None:
    """``("session", id)``, ``("read", {"records", "missed", "end"})`` or ``("error",
    (kind, message))`` of ``node``'s answer to a trace request; None when malformed (each
    record a map with a number ``ts`` and a known ``kind``)."""
    rep = _answer(data, node)
    if rep is None or len(rep) != 2:
        return None
    if type(rep.get("session")) is int:
        return "session", rep["session"]
    error = rep.get("error")
    if (isinstance(error, list) and len(error) == 2
            and all(isinstance(x, str) for x in error)):
        return "error", (error[0], error[1])
    read = rep.get("read")
    if not isinstance(read, dict) or set(read) != {"records", "missed", "end"}:
        return None
    records, missed, end = read["records"], read["missed"], read["end"]
    if (not isinstance(records, list) or type(missed) is not int or missed < 0
            or not (end is None or isinstance(end, str))):
        return None
    for r in records:
        if (not isinstance(r, dict) or not all(isinstance(k, str) for k in r)
                or type(r.get("ts")) not in _NUMBER or r.get("kind") not in trace.KINDS):
            return None
    return "read", read


def check_top_reply(data: bytes, node: str) -> tuple[dict[str, Any] | None] | None:
    """``(sample,)`` of ``node``'s answer to a ``top`` request (sample None: no such host
    there); None when malformed (not msgpack, another node's, a key missing, extra or of
    the wrong type)."""
    rep = _answer(data, node)
    if rep is None or "sample" not in rep:
        return None
    sample = rep["sample"]
    if sample is None:
        return (None,)
    if (not isinstance(sample, dict) or set(sample) != {"ts", "sort", "node", "hosts",
                                                         "processes"}
            or type(sample["ts"]) not in _NUMBER or sample["sort"] not in SORTS
            or not _shaped(sample["node"], _TOP_NODE)
            or not isinstance(sample["hosts"], list)
            or not isinstance(sample["processes"], list)):
        return None
    for h in sample["hosts"]:
        if (not isinstance(h, dict) or set(h) != {"name", "workers"}
                or type(h["name"]) is not str or not isinstance(h["workers"], list)
                or not all(_shaped(w, _TOP_WORKER) for w in h["workers"])):
            return None
    for p in sample["processes"]:
        if not _shaped(p, _TOP_PROCESS) or not all(type(n) is str for n in p["names"]):
            return None
    return (sample,)


def _shaped(value: Any, types: dict[str, tuple[type, ...]]) -> bool:
    """Is ``value`` a map with exactly these keys, each of one of its types?"""
    return (isinstance(value, dict) and set(value) == set(types)
            and all(type(value[k]) in t for k, t in types.items()))


Answer = tuple[list[dict[str, Any]], int, bool]


def check_reply(data: bytes, node: str) -> Answer | None:
    """``(rows, omitted, known)`` of ``node``'s reply, each row tagged ``"node"``; None when
    malformed (not msgpack, another node's, or a row of the wrong shape)."""
    rep = _answer(data, node)
    if rep is None:
        return None
    procs, omitted, known = rep.get("processes"), rep.get("omitted", 0), rep.get("known", True)
    if (not isinstance(procs, list) or type(omitted) is not int or omitted < 0
            or type(known) is not bool):
        return None
    rows: list[dict[str, Any]] = []
    for p in procs:
        if not isinstance(p, dict):
            return None
        for key, types in _ROW_TYPES.items():
            v = p.get(key)
            if type(v) not in types or (type(v) is int and key == "worker" and v < 0):
                return None
        if not all(isinstance(n, str) for n in p["names"]):
            return None
        rows.append({"pid": p["pid"], "id": p["id"], "host": p["host"], "worker": p["worker"],
                     "state": p["state"], "names": p["names"], "mailbox": p["mailbox"],
                     "node": node})
    return rows, omitted, known


def pack_reply(node: str, incarnation: int, rows: list[dict[str, Any]] | None,
               limit: int) -> bytes:
    """The reply's bytes (``rows`` None: no such host), at most ``limit`` long: rows cut from
    the end (counted in ``omitted``) until it fits."""
    known, rows = rows is not None, rows or []
    keep = len(rows)
    while True:
        data: bytes = msgpack.packb({"node": node, "incarnation": incarnation, "known": known,
                                     "processes": rows[:keep], "omitted": len(rows) - keep})
        if len(data) <= limit or keep == 0:
            return data
        keep = min(keep - 1, keep * (limit - REPLY_OVERHEAD) // len(data))
        keep = max(keep, 0)


class _Lease:
    """The owner of a trace session here that another node's client reads."""

    __slots__ = ("read_at", "session")

    def __init__(self) -> None:
        self.read_at = time.monotonic()
        self.session: Session | None = None


class NodeQueries:
    """This node's side of the queries: answers them, and asks every other node."""

    def __init__(self, router: Router, link: NodeLink,
                 top: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        self.router, self.link = router, link
        self._top = top  # this node's top sample (control/top.py)
        self._leases: dict[tuple[str, int], _Lease] = {}  # (asking node, session) here
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # trace answers being made
        self.subject = f"{link.config.name}.ctl.{link.node}"
        self.answered = 0  # requests answered
        self.malformed = 0  # requests dropped at the boundary
        self.bad_replies = 0  # replies dropped at the boundary (their node: missing)
        self._nc: Any = None  # nats.aio.client.Client, once connected
        self._sub: Any = None  # our subscription to ``subject``
        # first: a subscription is quick, and must not wait for slower hooks (JetStream)
        link.on_connect.insert(0, self._subscribe)

    def counts(self) -> dict[str, int]:
        """The counters, for ``status``."""
        return {"answered": self.answered, "malformed": self.malformed,
                "bad_replies": self.bad_replies}

    async def ps(self, host: str | None) -> dict[str, Any]:
        """Every up node's processes (this node's first), and the up nodes that did not
        answer within :data:`REPLY_WAIT` (``missing``) or had rows cut (``omitted``)."""
        link = self.link
        asked = sorted(m.node for m in link.members.members.values()
                       if m.state is NodeState.UP)
        request = msgpack.packb({"op": "ps", "from": link.node, "host": host})
        local, *answers = await asyncio.gather(
            self._local(host), *(self._ask(n, request) for n in asked))
        rows = [dict(r, node=link.node) for r in local or []]
        missing: list[str] = []
        omitted: dict[str, int] = {}
        for node, answer in zip(asked, answers, strict=True):
            if answer is None:
                missing.append(node)
                continue
            rows.extend(answer[0])
            if answer[1]:
                omitted[node] = answer[1]
        return {"processes": rows, "missing": missing, "omitted": omitted,
                "wait": REPLY_WAIT}

    async def ps_of(self, node: str, host: str) -> dict[str, Any]:
        """The processes of ``host`` on ``node`` (another node), as :meth:`ps` shapes them;
        NOT_FOUND when that node is not up, does not answer, or has no such host."""
        m = self.link.members.members.get(node)
        if m is None or m.state is not NodeState.UP:
            raise NotFoundError(f"node {node!r} is {'unknown' if m is None else 'down'}")
        answer = await self._ask(node, msgpack.packb(
            {"op": "ps", "from": self.link.node, "host": host}))
        if answer is None:
            raise NotFoundError(f"node {node!r} did not answer within {REPLY_WAIT}s")
        rows, omitted, known = answer
        if not known:
            raise NotFoundError(f"unknown host {host!r} on node {node!r}")
        return {"processes": rows, "missing": [], "omitted": {node: omitted} if omitted else {},
                "wait": REPLY_WAIT}

    async def info(self, node: str, pid: str) -> dict[str, Any]:
        """``actord info`` of ``pid``, a process of ``node`` (another node), as that node's
        router has it; NOT_FOUND when the node is not up, does not answer in time (or answers
        something malformed), or has no such live process."""
        answer = await self._ask_one(node, {"op": "info", "pid": pid}, check_info_reply)
        if answer[0] is None:
            raise NotFoundError(f"process {pid} is not alive")
        return answer[0]

    async def top_of(self, node: str, host: str, sort: str, limit: int) -> dict[str, Any]:
        """``actord top --host node@host``: ``node``'s own sample of its ``host``; NOT_FOUND
        when the node is not up, does not answer in time (or something malformed), or has
        no such host."""
        answer = await self._ask_one(node, {"op": "top", "host": host, "sort": sort,
                                            "limit": limit}, check_top_reply)
        if answer[0] is None:
            raise NotFoundError(f"unknown host {host!r} on node {node!r}")
        return answer[0]

    async def trace_start(self, node: str, pid: str, kinds: frozenset[str] | None,
                          limit: int, duration: float | None) -> int:
        """Start a trace of ``pid``, a process of ``node``, kept there for us: its session."""
        answer = await self._trace(node, {
            "op": "trace", "pid": pid, "events": None if kinds is None else sorted(kinds),
            "limit": limit, "duration": duration}, REPLY_WAIT)
        if answer[0] != "session":
            raise InvalidError(f"node {node!r} answered a trace start with a read")
        session: int = answer[1]
        return session

    async def trace_read(self, node: str, session: int, pid: str, wait: float,
                         stop: bool) -> dict[str, Any]:
        """Read (and with ``stop`` end) our trace ``session`` kept by ``node``, waiting
        there up to ``wait`` seconds for a record, as a local read does."""
        answer = await self._trace(node, {"op": "trace_read", "pid": pid, "session": session,
                                          "wait": wait, "stop": stop}, wait + REPLY_WAIT)
        if answer[0] != "read":
            raise InvalidError(f"node {node!r} answered a trace read with a session")
        read: dict[str, Any] = answer[1]
        return read

    def trace_forget(self, node: str, session: int, pid: str) -> None:
        """Our client went: end its session on ``node`` (unanswered; else its lease ends it)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        data = msgpack.packb({"op": "trace_read", "from": self.link.node, "pid": pid,
                              "session": session, "wait": 0, "stop": True})
        self._spawn(nc.publish(f"{self.link.config.name}.ctl.{node}", data))

    async def _trace(self, node: str, request: dict[str, Any],
                     timeout: float) -> tuple[str, Any]:
        answer = await self._ask_one(node, request, check_trace_reply, timeout)
        if answer[0] == "error":
            raise from_kind(*answer[1])
        return answer

    async def _ask_one(self, node: str, request: dict[str, Any],
                       check: Callable[[bytes, str], Any], timeout: float = REPLY_WAIT) -> Any:
        """``node``'s answer to ``request``, as ``check`` takes it from its bytes; NOT_FOUND
        when the node is not up, or does not answer in time (or something malformed:
        counted, the first logged)."""
        m = self.link.members.members.get(node)
        if m is None or m.state is not NodeState.UP:
            raise NotFoundError(f"node {node!r} is {'unknown' if m is None else 'down'}")
        data = await self._request(node, msgpack.packb({**request, "from": self.link.node}),
                                   timeout)
        answer = None if data is None else check(data, node)
        if answer is None:
            if data is not None:
                self._bad_reply(node, request["op"])
            raise NotFoundError(f"node {node!r} did not answer within {timeout}s")
        return answer

    async def _answer_trace(self, msg: Any, asker: str, op: str, arg: dict[str, Any]) -> None:
        """A trace start or read from ``asker``, answered (in a task: a read may wait)."""
        try:
            if op == "trace":
                result: dict[str, Any] = {"session": self._trace_here(asker, arg)}
            else:
                result = {"read": await self._read_here(asker, arg)}
        except ProcessError as e:
            result = {"error": [e.kind, wire.clip_text(str(e))]}
        if not msg.reply:
            return  # a forget: nobody waits for the answer
        try:
            await msg.respond(msgpack.packb({"node": self.link.node, **result}))
        except Exception as e:  # connection lost meanwhile: the asker gives up
            log.debug("cluster: trace reply not sent (%s)", e or type(e).__name__)
            return
        self.answered += 1

    def _trace_here(self, asker: str, arg: dict[str, Any]) -> int:
        pid = arg["pid"]
        if ids.node_of(pid) != self.link.node:
            raise NotFoundError(f"process {pid} is not one of node {self.link.node!r}")
        if len(self._leases) >= MAX_REMOTE_TRACES:
            raise InvalidError(f"too many trace sessions of other nodes here (at most "
                               f"{MAX_REMOTE_TRACES})")
        lease = _Lease()
        s = self.router.traces.start(pid, arg["kinds"], arg["limit"], arg["duration"], lease)
        lease.session = s
        self._leases[(asker, s.id)] = lease
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(TRACE_LEASE / 3, self._sweep)
        return s.id

    async def _read_here(self, asker: str, arg: dict[str, Any]) -> dict[str, Any]:
        key = (asker, arg["session"])
        lease = self._leases.get(key)
        if lease is None or lease.session is None:
            raise NotFoundError(f"no trace session {arg['session']!r} of node {asker!r} here")
        s = lease.session
        if s.pid != arg["pid"]:
            raise InvalidError(f"trace session {s.id} traces {s.pid}, not {arg['pid']}")
        lease.read_at = time.monotonic()
        traces = self.router.traces
        if arg["stop"]:
            traces.stop(s, "stopped")
        nc = self._nc
        budget = (nc.max_payload if nc is not None else 1 << 20) // 2
        read = await traces.read(s, arg["wait"], budget)
        lease.read_at = time.monotonic()
        if read["end"] is not None:
            self._leases.pop(key, None)
        return read

    def _sweep(self) -> None:
        """Close the sessions no node has read for TRACE_LEASE seconds."""
        self._sweeper = None
        now = time.monotonic()
        for key, lease in list(self._leases.items()):
            s = lease.session
            if s is not None and s.waiter is None and now - lease.read_at > TRACE_LEASE:
                del self._leases[key]
                self.router.traces.close(s)
        if self._leases:
            self._sweeper = asyncio.get_running_loop().call_later(TRACE_LEASE / 3, self._sweep)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internals ------------------------------------------------------------------------------
    async def _local(self, host: str | None,
                     timeout: float = 3.0) -> list[dict[str, Any]] | None:
        """This node's rows; None for a host it does not have (another node may)."""
        if host is not None and host not in self.router.hosts:
            return None
        return await self.router.ps(host, timeout)

    async def _subscribe(self, nc: Any) -> None:
        """Subscribe once: nats-py keeps a subscription across reconnects (the hook may run
        again after each one)."""
        self._nc = nc
        if self._sub is None:
            self._sub = await nc.subscribe(self.subject, cb=self._on_request)

    async def _request(self, node: str, request: bytes,
                       timeout: float = REPLY_WAIT) -> bytes | None:
        """``node``'s answer's bytes, None when none came within ``timeout``."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return None
        try:
            msg = await nc.request(f"{self.link.config.name}.ctl.{node}", request,
                                   timeout=timeout)
        except Exception as e:  # timeout, no responders, connection lost: missing
            log.debug("cluster: query: no answer from %s (%s)", node, e or type(e).__name__)
            return None
        data: bytes = msg.data
        return data

    async def _ask(self, node: str, request: bytes) -> Answer | None:
        data = await self._request(node, request)
        answer = None if data is None else check_reply(data, node)
        if answer is None and data is not None:
            self._bad_reply(node, "ps")
        return answer

    def _bad_reply(self, node: str, op: str) -> None:
        self.bad_replies += 1
        (log.warning if self.bad_replies == 1 else log.debug)(
            "cluster: malformed %s reply from %s dropped (%d so far)", op, node, self.bad_replies)

    async def _info(self, pid: str | None) -> dict[str, Any] | None:
        """This node's ``info`` of ``pid``; None when it is not one of our live processes."""
        if pid is None or ids.node_of(pid) != self.link.node:
            return None
        try:
            return await self.router.info(pid, WORKER_WAIT)
        except NotFoundError:
            return None

    async def _on_request(self, msg: Any) -> None:
        req = check_request(msg.data)
        # trace reads may wait: answered in tasks; a read without a reply subject is a forget
        if req is not None and (req[0] == "trace_read" or (req[0] == "trace" and msg.reply)):
            self._spawn(self._answer_trace(msg, req[1]["from"], req[0], req[1]))
            return
        if req is None or not msg.reply:
            self.malformed += 1
            (log.warning if self.malformed == 1 else log.debug)(
                "cluster: malformed query on %s dropped (%d so far)", msg.subject, self.malformed)
            return
        op, arg = req
        nc = self._nc
        if op == "ps":
            data = pack_reply(self.link.node, self.link.incarnation,
                              await self._local(arg, WORKER_WAIT), nc.max_payload)
        elif op == "top":
            try:
                sample: dict[str, Any] | None = await self._top(arg)
            except ProcessError:  # no such host here
                sample = None
            data = msgpack.packb({"node": self.link.node, "sample": sample})
        else:
            data = msgpack.packb({"node": self.link.node, "info": await self._info(arg)})
            if len(data) > nc.max_payload:  # thousands of links: the asker hears nothing
                log.warning("cluster: info of %s for %s not sent: %d bytes is over NATS's "
                            "max_payload", arg, msg.subject, len(data))
                return
        try:
            await msg.respond(data)
        except Exception as e:  # connection lost meanwhile: the asker reports us missing
            log.debug("cluster: %s reply not sent (%s)", op, e or type(e).__name__)
            return
        self.answered += 1


__all__ = ["NodeQueries", "check_info_reply", "check_reply", "check_request",
           "check_top_reply", "check_trace_reply", "pack_reply"]
