"""The control socket's commands: one handler per command, in a literal table.

Each handler takes the request's argument map and returns the reply's value; it raises a
``ProcessError`` (its ``kind`` is the reply's error) for a refusal. The server has checked the
client's permissions before a handler runs (:mod:`actord.control.server`); a handler checks
its own arguments. Invariant: a handler acts on the node only through its
:class:`~actord.nodeview.ControlledNode` view.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from actord import ids
from actord.control import top as top_view
from actord.control.node_queries import NodeQueries
from actord.core import trace, wire
from actord.durations import cancel_deadline, check_seconds
from actord.errors import AlreadyExistsError, InvalidError, NotFoundError, ProcessError
from actord.logring import LEVELS, Filter
from actord.values import check_topic, payload

if TYPE_CHECKING:
    from actord.nodeview import ControlledNode

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

#: the longest a ``logs`` request waits for a new record (its ``wait``), in seconds
LOGS_MAX_WAIT = 10.0

#: the (actor, scope) of the client whose command is running (set per command task)
current_client: contextvars.ContextVar[tuple[dict[str, Any] | None, list[str] | None]] = (
    contextvars.ContextVar("actord_control_client", default=(None, None))
)


class Closers:
    """What is to be done when a control connection goes away (its trace sessions end); a
    trace session is known by its connection's."""

    def __init__(self) -> None:
        self._todo: list[Callable[[], None]] = []
        self.gone = False

    def add(self, close: Callable[[], None]) -> None:
        """Do ``close`` when the connection goes (at once if it is gone)."""
        if self.gone:
            close()
        else:
            self._todo.append(close)

    def run(self) -> None:
        """The connection is gone: do everything added."""
        self.gone = True
        todo, self._todo = self._todo, []
        for close in todo:
            close()


#: the closers of the connection whose command is running (set per command task)
current_closers: contextvars.ContextVar[Closers | None] = (
    contextvars.ContextVar("actord_control_closers", default=None)
)
#: the most trace sessions a node keeps open at once (each holds a bounded queue)
MAX_TRACE_SESSIONS = 256


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    """Give ``future`` its result unless it already has one."""
    if not future.done():
        future.set_result(value)


class Commands:
    """The command handlers of one node's control socket."""

    def __init__(self, node: ControlledNode) -> None:
        self.node = node
        self.router = node.router
        link = self.router.cluster
        # answers other nodes' queries from the moment the node link connects
        self.queries = None if link is None else NodeQueries(
            self.router, link, lambda a: top_view.sample(self.node, a))
        self.handlers: dict[str, Handler] = {
            "status": self.status,
            "top": self.top,
            "nodes": self.nodes,
            "ps": self.ps,
            "info": self.info,
            "spawn": self.spawn,
            "send": self.send,
            "kill": self.kill,
            "cancel": self.cancel,
            "exec": self.exec,
            "registry": self.registry,
            "services": self.services,
            "start": self.start_service,
            "stop": self.stop_service,
            "restart": self.restart_service,
            "reload": self.reload,
            "shutdown": self.shutdown,
            "ping": self.ping,
            "restart-worker": self.restart_worker,
            "logs": self.logs,
            "trace": self.trace,
        }

    def resolve(self, dest: Any) -> str:
        """The canonical PID of a PID or a registered name (INVALID, NOT_FOUND)."""
        return ids.resolve(dest, self.router.lookup_name)

    # -- commands --------------------------------------------------------------------------------
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        d = self.node
        hosts = [
            {
                "name": host,
                "workers": [
                    {"index": w.index, "os_pid": w.os_pid, "processes": len(w.pids),
                     "restarts": w.restarts, "up": w.up,
                     "uptime": round(time.time() - w.started_at, 3),
                     **self.router.stalls.row(w)}
                    for w in slots
                ],
            }
            for host, slots in self.router.hosts.items()
        ]
        return {
            "node": d.node,
            "ready": d.ready,
            "uptime": round(time.time() - d.started_at, 3),
            "os_pid": os.getpid(),
            "processes": len(self.router.procs),
            "routed": self.router.routed,
            "dead_letters": self.router.dead_letters,
            "hosts": hosts,
            "services": d.services.rows(),
            "cluster": self._cluster(),
            "traces": self.router.traces.counts(),
        }

    async def top(self, args: dict[str, Any]) -> dict[str, Any]:
        """SPEC 12: one sample for ``actord top`` (control/top.py); ``--host n2@H`` is asked
        of node n2 (node_queries.py), whose sample it is."""
        host = args.get("host")
        node, plain = ids.split_host(host) if isinstance(host, str) else (None, None)
        link = self.router.cluster
        if node is not None and link is not None and node != link.node:
            sort, limit = top_view.sort_and_limit(args)
            assert self.queries is not None
            return await self.queries.top_of(node, plain or "", sort, limit)
        return await top_view.sample(self.node, args)

    def _cluster(self) -> dict[str, Any] | None:
        link = self.router.cluster
        if link is None:
            return None
        queries = {} if self.queries is None else {"queries": self.queries.counts()}
        return {"name": link.config.name, "node": link.node, "nodes": link.rows(), **queries}

    async def nodes(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """SPEC 11: every node of the cluster, this one included; [] without [cluster]."""
        link = self.router.cluster
        if link is None:
            return []
        rows = link.rows()
        workers, _ = await self.router.worker_stats()
        add_direct_counts(rows, link.node, [stats.get("direct") for _, stats in workers])
        return rows

    async def ps(self, args: dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        """This node's processes; with ``cluster``, every up node's (node_queries.py), as
        ``{"processes", "missing", "omitted", "wait"}`` (a single node: its own, tagged). A
        ``node@host`` names another node's host (its rows tagged with ``node``)."""
        host = args.get("host")
        if host is not None and not isinstance(host, str):
            raise InvalidError("host: a string")
        node, plain = (None, None) if host is None else ids.split_host(host)
        link = self.router.cluster
        if node is not None and (link is None or node != link.node):
            if self.queries is None:
                raise NotFoundError(f"unknown node {node!r} (this node is in no cluster)")
            answer = await self.queries.ps_of(node, plain or "")
            return answer if args.get("cluster") else answer["processes"]
        host = plain
        if args.get("cluster") and self.queries is not None:
            return await self.queries.ps(host)
        if host is not None and host not in self.router.hosts:
            raise NotFoundError(f"unknown host {host!r}")
        rows = await self.router.ps(host)
        if args.get("cluster"):
            return {"processes": [dict(r, node=self.node.node) for r in rows],
                    "missing": [], "omitted": {}, "wait": 0}
        return rows

    async def info(self, args: dict[str, Any]) -> dict[str, Any]:
        """SPEC 12: one live process, as ``process_info`` shows it (the router's ``info``;
        another node's process as its node's router has it); NOT_FOUND if it is not alive."""
        pid = self.resolve(args.get("dest"))
        node = self.router.remote_node(pid)
        if node is not None and self.queries is not None:
            return await self.queries.info(node, pid)  # asked of that node (node_queries.py)
        return await self.router.info(pid)

    async def spawn(self, args: dict[str, Any]) -> str:
        pid: str = await self.router.request("", "spawn", self._spawn_request(args))
        return pid

    def _spawn_request(self, args: dict[str, Any], flags: int = 0) -> wire.SpawnRequest:
        spawn_args = args.get("args") or []
        if not isinstance(spawn_args, list):
            raise InvalidError("args must be a list")
        name = args.get("name")
        try:
            wire.check_size(wire.encode_value(spawn_args), self.router.max_frame)
        except wire.ValueTooLarge as e:
            raise InvalidError(str(e)) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidError(f"args are not msgpack values: {e}") from None
        actor, scope = current_client.get()  # processes a client starts run as that client
        return wire.spawn_request(str(args["id"]), str(args["host"]), spawn_args, flags,
                                  name=None if name is None else ids.check_name(name),
                                  actor=actor, scope=scope)

    async def send(self, args: dict[str, Any]) -> None:
        topic = check_topic(args.get("topic"))
        values = args.get("values") or []
        if not isinstance(values, list):
            raise InvalidError("values must be a list")
        self.router.send("", self.resolve(args.get("dest")), topic,
                         wire.encode_value(payload(tuple(values))))

    async def kill(self, args: dict[str, Any]) -> None:
        """Terminate, then wait for the EXIT unless ``no_wait`` (the worker acts on the
        terminate when its loop runs)."""
        no_wait = args.get("no_wait", False)
        if type(no_wait) is not bool:
            raise InvalidError(f"bad no_wait {no_wait!r}")
        pid = self.resolve(args.get("dest"))
        if self.router.remote_node(pid) is not None:
            await self._kill_remote(pid, no_wait)
            return
        self.router.terminate(pid)
        if not no_wait:
            await self._wait_exit(pid)

    async def _kill_remote(self, pid: str, no_wait: bool) -> None:
        """Terminate another node's process; unless ``no_wait``, its end is watched first
        (a monitor held by this node's control socket) and waited for, bounded."""
        router = self.router
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not no_wait:
            def watch(_: Any) -> None:
                router.on_remote_exit(pid, lambda _: _settle(ended, None))
            try:  # watched as the REPLY comes: an end right after it is not missed
                await router.request(router.control_pid, "monitor", {"dest": pid}, then=watch)
            except AlreadyExistsError:  # another kill watches it: its monitor tells us too
                watch(None)
        await router.request("", "terminate", {"dest": pid})
        if not no_wait:
            bound = min(router.stalls.timeout + 2.0, 25.0)
            try:
                async with asyncio.timeout(bound):
                    await ended
            except TimeoutError:
                raise ProcessError(f"process {pid} did not end within {bound:.0f}s") from None

    async def _wait_exit(self, pid: str) -> None:
        """Wait for ``pid``'s end; fail at once if its worker is (or becomes) stalled, and
        after ``stall_timeout`` + 2 s (at most 25 s) without either."""
        entry = self.router.procs.get(pid)
        if entry is None:
            return
        link = entry.worker
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        self.router.on_exit(pid, lambda _: _settle(ended, None))
        stalled = self.router.stalls.when_stalled(link)
        bound = min(self.router.stalls.timeout + 2.0, 25.0)
        try:
            await asyncio.wait((ended, stalled), timeout=bound,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stalled.cancel()
        if ended.done():
            return
        since = self.router.stalls.stalled_for(link)
        if since is None:
            raise ProcessError(f"process {pid} did not end within {bound:.0f}s")
        raise ProcessError(
            f"process {pid} is on worker {link.tag}, stalled for {since:.1f}s (its event loop "
            f"is blocked): it ends when that loop runs again; to end it now: "
            f"actord restart-worker {link.host} {link.index}"
        )

    async def cancel(self, args: dict[str, Any]) -> None:
        at = cancel_deadline(args.get("deadline"), time.time())
        reason = args.get("reason")
        await self.router.request("", "cancel", {
            "dest": self.resolve(args.get("dest")), "deadline": at,
            "reason": None if reason is None else str(reason)})

    async def exec(self, args: dict[str, Any]) -> dict[str, Any]:
        timeout = args.get("timeout")
        if timeout is not None:  # before anything acts: a bad timeout spawns nothing
            try:
                timeout = check_seconds(timeout)
            except ValueError as e:
                raise InvalidError(f"bad timeout: {e}") from None
        router = self.router
        done: asyncio.Future[wire.ExitResult] = asyncio.get_running_loop().create_future()
        request = self._spawn_request(args)
        node, host = router.split_remote_host(request.host)
        if node is not None:
            # on another node (the request keeps its node@host: router.request sends it
            # there): this node's control socket monitors the child from its start
            request = request._replace(flags=wire.SPAWN_MONITOR)
            # watched as the REPLY comes: the child's EXITED may be in the same batch
            pid = await router.request(router.control_pid, "spawn", request,
                                       then=lambda pid: router.on_remote_exit(
                                           pid, lambda r: _settle(done, r)))
        else:
            pid = router.spawn("", request._replace(host=host))
            with contextlib.suppress(NotFoundError):
                router.on_exit(pid, lambda r: _settle(done, r))
        try:
            async with asyncio.timeout(timeout):
                result = await done
        except TimeoutError:
            with contextlib.suppress(ProcessError):
                await router.request("", "cancel", {"dest": pid, "reason": "exec timeout"})
            return {**wire.exit_error("timeout"), "pid": pid}
        except asyncio.CancelledError:  # the client went away (or the daemon stops)
            with contextlib.suppress(ProcessError):
                router.cancel_soon(pid, "exec cancelled")
            raise
        return {**result, "pid": pid}

    async def registry(self, args: dict[str, Any]) -> dict[str, str]:
        return self.router.names_snapshot()

    async def services(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.node.services.rows()

    async def start_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.node.services.start(args["service"])

    async def stop_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.node.services.stop(args["service"])

    async def restart_service(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.node.services.restart(args["service"])

    async def restart_worker(self, args: dict[str, Any]) -> dict[str, Any]:
        """SIGKILL one worker (e.g. a stalled one); its processes end with ``"worker
        crashed"`` and its slot is refilled. Returns the old and new OS pids and the ends."""
        host, index = args.get("host"), args.get("index")
        if not isinstance(host, str) or type(index) is not int:
            raise InvalidError("restart-worker needs a host name and a worker index")
        host = self._own_host(host, "restart-worker")
        if self.node.pool is None:
            raise NotFoundError("the workers are not started yet")
        return await self.node.pool.restart_worker(host, index)

    async def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.node.reload()

    async def shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        """Begin the shutdown; the daemon's PID and how long its shutdown may take, so the
        CLI can wait for the process to be gone."""
        self.node.request_stop("shutdown command")
        return {"os_pid": os.getpid(), "bound": self.node.stop_bound()}

    async def logs(self, args: dict[str, Any]) -> dict[str, Any]:
        """The daemon's recent log records (:mod:`actord.logring`) that the filters select.

        Without ``after``: the newest ``lines`` records. With ``after`` (a cursor): the
        records logged after it, waiting up to ``wait`` seconds for one (a long poll; the
        follower's next request takes the reply's ``cursor``, and its ``pid``: the filter's
        name resolved, as the name may be released before the follower asks again).
        ``missed`` counts the records after the cursor that the ring dropped before they were
        read; ``dropped`` all it has dropped. A reply is bounded (1000 records, half of
        ``max_frame``); the daemon keeps nothing per reader.
        """
        ring = self.node.logs
        wanted = self._log_filter(args)
        budget = self.node.config.daemon.max_frame // 2
        after = args.get("after")
        if after is None:
            lines = args.get("lines", 100)
            if type(lines) is not int or lines < 0:
                raise InvalidError(f"bad lines {lines!r}: expected a count")
            return {"records": ring.tail(wanted, lines, budget), "cursor": ring.last,
                    "missed": 0, "dropped": ring.dropped, "pid": wanted.pid}
        if type(after) is not int or after < 0:
            raise InvalidError(f"bad after {after!r}: expected a cursor")
        wait = args.get("wait", 0)
        if type(wait) not in (int, float) or not 0 <= wait <= LOGS_MAX_WAIT:
            raise InvalidError(f"bad wait {wait!r}: expected 0..{LOGS_MAX_WAIT:g} seconds")
        cursor = min(after, ring.last)  # a cursor from the future (another run) starts now
        deadline = time.monotonic() + wait
        while True:
            records, cursor, missed = ring.after(cursor, wanted, budget)
            left = deadline - time.monotonic()
            if records or missed or left <= 0:
                return {"records": records, "cursor": cursor, "missed": missed,
                        "dropped": ring.dropped, "pid": wanted.pid}
            await ring.wait_new(cursor, left)

    def _log_filter(self, args: dict[str, Any]) -> Filter:
        pid, host, level = args.get("pid"), args.get("host"), args.get("level")
        if host is not None:
            if not isinstance(host, str):
                raise InvalidError(f"bad host {host!r}")
            host = self._own_host(host, "logs")
        if level is not None and (not isinstance(level, str) or level.lower() not in LEVELS):
            raise InvalidError(f"bad level {level!r}: one of {', '.join(LEVELS)}")
        if pid is not None:
            pid = self.resolve(pid)
            node = self.router.remote_node(pid)
            if node is not None:  # not in this daemon's log: say so, never an empty answer
                raise ProcessError(f"logs of a process of another node ({node}) are in that "
                                   "node's log: run actord logs on that node")
        return Filter(pid, host, level)

    def _own_host(self, host: str, command: str) -> str:
        """``host`` without our own node's prefix; another node's is refused in one line
        (``command`` reads or acts on this daemon only)."""
        node, plain = self.router.split_remote_host(host)
        if node is not None:
            raise ProcessError(f"{command} acts on this node only: run it on node {node}")
        return plain

    async def trace(self, args: dict[str, Any]) -> dict[str, Any]:
        """SPEC 12: one local process's trace (:mod:`actord.router.traces`), owned by this
        connection (it ends when the connection goes).

        Without ``session``: start one (``events``: the kinds wanted, None for all;
        ``limit`` records, default 1000; ``duration`` seconds or None), answering
        ``{"session", "pid"}``. With it: read it as ``logs`` follows the ring, a long poll
        (``wait`` seconds at most), answering ``{"records", "missed", "end"}``; with ``stop``
        end it first. ``dest`` is the traced process on every request: the permission
        (``process.trace``) is checked on it each time.
        """
        pid = self.resolve(args.get("dest"))
        owner = current_closers.get()
        if owner is None:
            raise InvalidError("trace needs a control connection")
        node = self.router.remote_node(pid)
        if node is not None:
            return await self._trace_remote(node, pid, args, owner)
        traces = self.router.traces
        if args.get("session") is None:
            kinds, limit, duration = _trace_options(args)
            if len(traces.sessions) >= MAX_TRACE_SESSIONS:
                raise InvalidError(f"too many trace sessions (at most {MAX_TRACE_SESSIONS})")
            s = traces.start(pid, kinds, limit, duration, owner)
            owner.add(functools.partial(traces.close, s))
            return {"session": s.id, "pid": pid}
        s = traces.get(args["session"], owner)
        if s.pid != pid:
            raise InvalidError(f"trace session {s.id} traces {s.pid}, not {pid}")
        if args.get("stop"):
            traces.stop(s, "stopped")
        wait = args.get("wait", 0)
        if type(wait) not in (int, float) or not 0 <= wait <= LOGS_MAX_WAIT:
            raise InvalidError(f"bad wait {wait!r}: expected 0..{LOGS_MAX_WAIT:g} seconds")
        return await traces.read(s, wait, self.node.config.daemon.max_frame // 2)

    async def _trace_remote(self, node: str, pid: str, args: dict[str, Any],
                            owner: Closers) -> dict[str, Any]:
        """:meth:`trace` of another node's process: the session is kept by that node
        (node_queries.py), ended there when this connection goes."""
        queries = self.queries
        assert queries is not None  # a PID of another node: we are in a cluster
        session = args.get("session")
        if session is None:
            kinds, limit, duration = _trace_options(args)
            session = await queries.trace_start(node, pid, kinds, limit, duration)
            owner.add(functools.partial(queries.trace_forget, node, session, pid))
            return {"session": session, "pid": pid}
        if type(session) is not int:
            raise InvalidError(f"bad trace session {session!r}")
        wait = args.get("wait", 0)
        if type(wait) not in (int, float) or not 0 <= wait <= LOGS_MAX_WAIT:
            raise InvalidError(f"bad wait {wait!r}: expected 0..{LOGS_MAX_WAIT:g} seconds")
        return await queries.trace_read(node, session, pid, wait, bool(args.get("stop")))

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        """A liveness probe (the CLI's client timeout) and the limits a client must respect."""
        return {"max_frame": self.node.config.daemon.max_frame}


def _trace_options(args: dict[str, Any]) -> tuple[frozenset[str] | None, int, float | None]:
    """A new trace's ``events`` (kinds), ``limit`` and ``duration``, checked (INVALID)."""
    events, limit, duration = args.get("events"), args.get("limit", 1000), args.get("duration")
    kinds = None
    if events is not None:
        if not isinstance(events, list) or not events or not all(
                isinstance(k, str) and k in trace.KINDS for k in events):
            raise InvalidError(f"bad events {events!r}: a list of {', '.join(trace.KINDS)}")
        kinds = frozenset(events)
    if type(limit) is not int or limit < 1:
        raise InvalidError(f"bad limit {limit!r}: expected a count of at least 1")
    if duration is not None:
        try:
            duration = check_seconds(duration)
        except ValueError as e:
            raise InvalidError(str(e)) from None
    return kinds, limit, duration


def add_direct_counts(rows: list[dict[str, Any]], me: str,
                      workers: list[dict[str, Any] | None]) -> None:
    """``actord nodes``: the routers' counts in ``rows`` plus the messages this node's
    workers sent and received straight (worker/direct.py): ``sent``, ``received`` and
    ``gaps`` are both paths' sums, ``stale`` counts dropped batches of either, ``lost``
    ``malformed`` and ``too_large`` (this node's row) too."""
    by_node = {row["node"]: row for row in rows}
    for direct in workers:
        if not direct:
            continue
        mine = by_node.get(me)
        if mine is not None:
            mine["malformed"] = mine.get("malformed", 0) + int(direct.get("malformed", 0))
            mine["too_large"] = mine.get("too_large", 0) + int(direct.get("too_large", 0))
        for node, (sent, received, gaps, dropped, lost) in direct.get("nodes", {}).items():
            row = by_node.get(node)
            if row is not None:
                row["sent"] = row.get("sent", 0) + sent
                row["received"] = row.get("received", 0) + received
                row["gaps"] = row.get("gaps", 0) + gaps
                row["stale"] = row.get("stale", 0) + dropped
            if mine is not None:
                mine["lost"] = mine.get("lost", 0) + lost
