"""Supervised services (SPEC section 8): start, watch, restart and stop ``[services]``.

The ``ServiceManager`` runs in the daemon beside the router. It keeps one record per service
and moves its state only through :func:`actord.service_state.transition` (the diagram is
there).

An end is abnormal when its result is an error (an exception, ``terminate``, a cancel
deadline, ``"worker crashed"``...). Whether it is restarted, after which delay, and when the
service is given up (``failed``) is decided by :mod:`actord.core.restart`; an end that is not
restarted is ``exited`` if normal, ``failed`` if abnormal. A spawn that fails (e.g. the
registered name is held by another process) counts as an abnormal end of a zero-length run.
While the service's host has no live worker (one is being replaced), the start waits for one
without counting a failure.

A service may run on another node's host (``host = "n2@app:main"``, SPEC 11): its spawn goes
to that node as a SPAWN_ACK spawn monitored by this node's control PID, which that node
answers once STARTED (or with the entry's error if it cannot load); its end comes back as an
EXITED (``"node down: n2"`` when the pair breaks), and stop's CANCEL and terminate go there
too. While that node is not up, a start waits for it as for a worker, counting no failure.

"Started" means spawned, registered, its entry loaded and its task created: services spawn
with ``SPAWN_ACK``, so the target worker imports the entry before the process exists and says
``STARTED`` (or the process ends at once with the import error); only then is the service
RUNNING. So a service started after its ``depends_on`` can resolve their names at once, and
``start`` (a command, ``auto_start``, a reload) waits, up to ``START_TIMEOUT``, for that
outcome. The first launch of a start that fails (spawn refused, entry cannot load, ended
before STARTED) is not retried: the service is FAILED and ``start`` reports it (OTP: a child
whose start fails is not restarted). A relaunch by the restart policy that fails counts as
an abnormal end of a zero-length run. ``depends_on`` orders start and stop (dependency
levels, each level in parallel); it does not start or stop dependencies.

Stop (signal, wait, then kill; the router's exit callback confirms): the steps of
:mod:`actord.core.stop` with ``stop_timeout`` as the cancel deadline; a process still alive
after them is reported as a ``ProcessError``::

    CANCEL, deadline now + stop_timeout   (the worker terminates the process at the deadline)
    wait for the end, up to stop_timeout + STOP_GRACE
    terminate, wait up to TERMINATE_WAIT  (only if the worker did not act: it is hung)

Invariants: a service has a live process iff its state is RUNNING or STOPPING, or STARTING
with ``pid`` set (spawned, STARTED not yet seen), and ``pid`` is that process; a requested
stop is never followed by a restart, nor is any end once the manager is closing (daemon
shutdown); at most one restart timer per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from actord.core import wire
from actord.core.config import Config, ServiceConfig, service_start_order
from actord.core.restart import add_restart, backoff_delay, next_streak, should_restart
from actord.core.stop import stop_steps
from actord.errors import AlreadyExistsError, InvalidError, NotFoundError, ProcessError
from actord.router import Router
from actord.service_state import IllegalTransitionError, ServiceState, transition

log = logging.getLogger("actord.services")

#: seconds between checks for a live worker while the service's host has none
WORKER_POLL = 0.05
#: seconds between checks for the node of another node's host while it is not up
NODE_POLL = 0.25
#: seconds ``start`` waits for a launch's outcome (STARTED, or its failure)
START_TIMEOUT = 30.0


class _Service:
    """One service's record; only the ``ServiceManager`` touches it."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.state = ServiceState.STOPPED
        self.pid: str | None = None
        self.restarts = 0  # restarts by the policy since the daemon started
        self.last_error: str | None = None  # of the last abnormal end
        self.reason: str | None = None  # why it is FAILED or EXITED
        self.history: tuple[float, ...] = ()  # restart times still in the intensity window
        self.streak = 0  # consecutive restarts: the backoff exponent
        self.started_at = 0.0  # monotonic, of the current run
        self.timer: asyncio.TimerHandle | None = None
        self.idle = asyncio.Event()  # set while no process of this service is alive
        self.idle.set()
        # the outcome of a start's first launch (its row then), for ``start`` to wait on;
        # while set, a failed launch is not retried
        self.waiter: asyncio.Future[dict[str, Any]] | None = None


class ServiceManager:
    """The supervisor of every configured service."""

    def __init__(
        self,
        router: Router,
        config: Config,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.config = config
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.closing = False
        self._services = {name: _Service(s) for name, s in config.services.items()}
        self._pending: set[str] = set()  # to start once a reload resized the hosts
        self._launches: set[asyncio.Task[None]] = set()  # spawns on other nodes in flight

    # -- API ---------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Every service in config order, as ``services --json`` shows it."""
        return [self._row(svc) for svc in self._services.values()]

    async def start_all(self) -> dict[str, str]:
        """Start the ``auto_start`` services, dependency level by level, each level once the
        one before runs; ``{name: error}`` of those that could not start (empty: all run),
        and then no further level is started."""
        for level in service_start_order(self.config):
            rows = await asyncio.gather(
                *(self.start(n) for n in level if self._services[n].config.auto_start)
            )
            failed = {r["name"]: r["last_error"] or r["reason"] or r["state"]
                      for r in rows if r["state"] == ServiceState.FAILED.value}
            if failed:
                return failed
        return {}

    async def stop_all(self) -> None:
        """Daemon shutdown: no more restarts; stop every service in reverse dependency order."""
        self.closing = True
        for level in reversed(service_start_order(self.config)):
            results = await asyncio.gather(
                *(self._stop(self._services[n]) for n in level), return_exceptions=True
            )
            for name, result in zip(level, results, strict=True):
                if isinstance(result, Exception):
                    log.error("service %s: %s", name, result)

    async def apply(self, config: Config) -> dict[str, list[str]]:
        """Reload, first half: stop removed and changed services and take the new config.

        Services whose config did not change keep running untouched (same PID). The changed
        ones that were active and the added ``auto_start`` ones are started by
        :meth:`start_pending`, once the daemon has resized the hosts.
        """
        old = self._services
        added = [n for n in config.services if n not in old]
        removed = [n for n in old if n not in config.services]
        changed = [n for n in config.services if n in old and old[n].config != config.services[n]]
        active = {n for n in changed
                  if old[n].state in (ServiceState.STARTING, ServiceState.RUNNING)}
        for name in removed + changed:
            await self._stop(old[name])
        self.config = config
        self._services = {n: old[n] if n in old else _Service(s)
                          for n, s in config.services.items()}
        for name in changed:
            self._services[name].config = config.services[name]
        self._pending = active | {n for n in added if config.services[n].auto_start}
        return {"added": added, "removed": removed, "changed": changed}

    async def start_pending(self) -> list[str]:
        """Reload, second half: start what :meth:`apply` left to start, level by level;
        the names of those that are not running afterwards."""
        pending, self._pending = self._pending, set()
        not_running: list[str] = []
        for level in service_start_order(self.config):
            rows = await asyncio.gather(*(self.start(n) for n in level if n in pending))
            not_running += [r["name"] for r in rows if r["state"] != ServiceState.RUNNING.value]
        return not_running

    async def start(self, name: str) -> dict[str, Any]:
        """Start a service that is not running (a fresh intensity and backoff) and wait (up
        to ``START_TIMEOUT``) until it runs or its start failed; its row then."""
        svc = self._get(name)
        if self.closing:
            raise InvalidError("the daemon is shutting down")
        if svc.state is ServiceState.STOPPING:
            await self._stop(svc)  # let the stop in progress finish first
        if svc.state in (ServiceState.STOPPED, ServiceState.FAILED, ServiceState.EXITED):
            svc.history, svc.streak, svc.reason = (), 0, None
            svc.waiter = asyncio.get_running_loop().create_future()
            self._move(svc, ServiceState.STARTING)
            self._launch(svc)
        if svc.waiter is None:
            return self._row(svc)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                return await asyncio.shield(svc.waiter)
        except TimeoutError:
            log.warning("service %s: not running %.0fs after its start", name, START_TIMEOUT)
            return self._row(svc)

    async def stop(self, name: str) -> dict[str, Any]:
        """Stop a service (see the module docstring); its row."""
        svc = self._get(name)
        await self._stop(svc)
        return self._row(svc)

    async def restart(self, name: str) -> dict[str, Any]:
        """Stop (if needed), then start; its row."""
        await self._stop(self._get(name))
        return await self.start(name)

    # -- internals: starting -----------------------------------------------------------------
    def _get(self, name: object) -> _Service:
        svc = self._services.get(name) if isinstance(name, str) else None
        if svc is None:
            raise NotFoundError(f"unknown service {name!r}")
        return svc

    def _move(self, svc: _Service, new: ServiceState) -> None:
        old, svc.state = svc.state, transition(svc.state, new)
        if old is not new:
            level = logging.WARNING if new is ServiceState.FAILED else logging.INFO
            log.log(level, "service %s: %s -> %s", svc.config.name, old.value, new.value)

    def _launch(self, svc: _Service) -> None:
        """Spawn the process of a STARTING service; a failed spawn counts as an abnormal end."""
        svc.timer = None
        cfg = svc.config
        node, _ = self.router.split_remote_host(cfg.host)
        if node is not None:
            self._launch_remote(svc, node)
            return
        if not any(w.up and w.ready for w in self.router.hosts.get(cfg.host, ())):
            svc.timer = asyncio.get_running_loop().call_later(WORKER_POLL, self._launch, svc)
            return
        try:
            pid = self._spawn(cfg)
        except ProcessError as e:
            log.error("service %s: spawn failed: %s", cfg.name, e)
            self._start_failed(svc, f"spawn failed: {e.kind}: {e}")
            return
        svc.pid = pid
        svc.idle.clear()
        self.router.on_exit(pid, lambda result: self._ended(svc, pid, result))
        self.router.on_started(pid, lambda: self._started(svc, pid))

    def _launch_remote(self, svc: _Service, node: str) -> None:
        """Spawn on ``node`` once it is up (polled, no failure counted while it is not): the
        REPLY comes at STARTED and adopts the PID then (``then``: before any later frame of
        that node, the child's EXITED included)."""
        cluster = self.router.cluster
        if cluster is None or not cluster.is_up(node):
            svc.timer = asyncio.get_running_loop().call_later(NODE_POLL, self._launch, svc)
            return
        request = self._request(svc.config)._replace(flags=wire.SPAWN_ACK | wire.SPAWN_MONITOR)
        router = self.router

        def adopt(pid: str) -> None:
            if svc.state is not ServiceState.STARTING or svc.pid is not None:
                router.cancel_soon(pid, "service stop")  # stopped while it was on its way
                return
            svc.pid = pid
            svc.idle.clear()
            router.on_remote_exit(pid, lambda result: self._ended(svc, pid, result))
            self._started(svc, pid)

        async def launch() -> None:
            try:
                await router.request(router.control_pid, "spawn", request, then=adopt)
            except ProcessError as e:
                if svc.state is ServiceState.STARTING and svc.pid is None:
                    # kind ERROR: the child ended before STARTED (its entry's error)
                    error = str(e) if type(e) is ProcessError else (
                        f"spawn failed: {e.kind}: {e}")
                    log.error("service %s: %s", svc.config.name, error)
                    self._start_failed(svc, error)

        task = asyncio.get_running_loop().create_task(launch())
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)

    def _started(self, svc: _Service, pid: str) -> None:
        """The router's STARTED callback: the entry loaded, the process runs."""
        if svc.pid != pid or svc.state is not ServiceState.STARTING:
            return  # being stopped meanwhile
        svc.started_at = self.clock()
        self._move(svc, ServiceState.RUNNING)
        self._settle(svc)

    def _start_failed(self, svc: _Service, error: str) -> None:
        """A launch that did not reach STARTED: FAILED if it is a start's first launch, else
        an abnormal end of a zero-length run."""
        if svc.waiter is not None:
            svc.last_error = error
            svc.reason = "could not start"
            log.error("service %s: could not start: %s", svc.config.name, error)
            self._move(svc, ServiceState.FAILED)
            self._settle(svc)
            return
        self._after_end(svc, wire.exit_error(error), ran_for=0.0)

    def _settle(self, svc: _Service) -> None:
        """The outcome of a start is known: wake whoever waits with the row now."""
        waiter, svc.waiter = svc.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._row(svc))

    def _spawn(self, cfg: ServiceConfig) -> str:
        name = cfg.registered_name
        holder = self.router.registry.lookup(name) if name else None
        if holder is not None:  # spawn would hand us the holder (with_name semantics)
            raise AlreadyExistsError(f"name {name!r} is held by {holder}")
        return self.router.spawn("", self._request(cfg))

    @staticmethod
    def _request(cfg: ServiceConfig) -> wire.SpawnRequest:
        """The SPAWN_ACK spawn of ``cfg``'s process, as its actor and scope."""
        actor = None if cfg.actor is None else {"id": cfg.actor.id, "meta": dict(cfg.actor.meta)}
        return wire.spawn_request(cfg.process, cfg.host, list(cfg.args), wire.SPAWN_ACK,
                                  name=cfg.registered_name, actor=actor,
                                  scope=list(cfg.scope) if cfg.scope else None)

    def _relaunch(self, svc: _Service) -> None:
        """The backoff timer fired: restart."""
        svc.restarts += 1
        self._launch(svc)

    # -- internals: ends ---------------------------------------------------------------------
    def _ended(self, svc: _Service, pid: str, result: wire.ExitResult) -> None:
        """The router's exit callback for the service's process."""
        if svc.pid != pid:
            return
        svc.pid = None
        svc.idle.set()
        abnormal = wire.is_abnormal(result)
        if abnormal:
            svc.last_error = str(wire.error_of(result))
        log.log(logging.WARNING if abnormal else logging.INFO,
                "service %s: %s ended %s", svc.config.name, pid,
                f"abnormally: {wire.error_of(result)}" if abnormal else "normally")
        if svc.state is ServiceState.STOPPING:
            self._move(svc, ServiceState.STOPPED)
            self._settle(svc)
            return
        if svc.state is ServiceState.STARTING:  # ended before STARTED: the entry did not load
            self._start_failed(svc, str(wire.error_of(result) if abnormal
                                        else "ended before it started"))
            return
        self._after_end(svc, result, ran_for=self.clock() - svc.started_at)

    def _after_end(self, svc: _Service, result: wire.ExitResult, ran_for: float) -> None:
        """Decide what follows an end (or a failed spawn) of a RUNNING or STARTING service."""
        cfg = svc.config
        abnormal = wire.is_abnormal(result)
        if abnormal:
            svc.last_error = str(wire.error_of(result))
        if self.closing or not should_restart(cfg.restart, abnormal):
            svc.reason = ("daemon shutting down" if self.closing
                          else f"not restarted (restart = {cfg.restart})")
            self._move(svc, ServiceState.FAILED if abnormal else ServiceState.EXITED)
            return
        svc.streak = next_streak(svc.streak, ran_for, cfg.backoff, cfg.intensity)
        svc.history, allowed = add_restart(svc.history, self.clock(), cfg.intensity)
        if not allowed:
            i = cfg.intensity
            svc.reason = (f"restart intensity exceeded: more than {i.max_restarts} restarts "
                          f"in {i.period:g}s")
            log.error("service %s: %s; giving up", cfg.name, svc.reason)
            self._move(svc, ServiceState.FAILED)
            return
        delay = backoff_delay(cfg.backoff, svc.streak, self.rng)
        svc.streak += 1
        self._move(svc, ServiceState.STARTING)
        svc.timer = asyncio.get_running_loop().call_later(delay, self._relaunch, svc)

    # -- internals: stopping -----------------------------------------------------------------
    async def _stop(self, svc: _Service) -> None:
        """Stop one service; nothing to do unless it is STARTING, RUNNING or STOPPING."""
        cfg = svc.config
        if svc.state is ServiceState.STARTING:
            if svc.timer is not None:
                svc.timer.cancel()
                svc.timer = None
            if svc.pid is None:  # no process yet (a backoff, or waiting for a worker)
                self._move(svc, ServiceState.STOPPED)
                self._settle(svc)
                return
        if svc.state in (ServiceState.STARTING, ServiceState.RUNNING):
            assert svc.pid is not None
            self._move(svc, ServiceState.STOPPING)
            await self._tell(svc.pid, "cancel", {"deadline": time.time() + cfg.stop_timeout,
                                                 "reason": "service stop"})
        if svc.state is not ServiceState.STOPPING:
            return
        cancel, terminate = stop_steps(cfg.stop_timeout)
        if await self._wait_idle(svc, cancel.wait):
            return
        pid = svc.pid
        log.warning("service %s: %s still alive %.1fs after CANCEL; terminating it",
                    cfg.name, pid, cancel.wait)
        if pid is not None:
            await self._tell(pid, "terminate", {})
        if not await self._wait_idle(svc, terminate.wait):
            raise ProcessError(f"service {cfg.name!r}: {pid} did not end after terminate")

    async def _tell(self, pid: str, op: str, args: dict[str, Any]) -> None:
        """CANCEL or terminate ``pid``, here or on another node. NOT_FOUND is fine: it has
        ended, or its node is down, and its exit callback says so."""
        with contextlib.suppress(NotFoundError):
            await self.router.request("", op, {"dest": pid, **args})

    @staticmethod
    async def _wait_idle(svc: _Service, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await svc.idle.wait()
        except TimeoutError:
            return False
        return True

    # -- internals: views --------------------------------------------------------------------
    def _row(self, svc: _Service) -> dict[str, Any]:
        cfg = svc.config
        running = svc.state in (ServiceState.RUNNING, ServiceState.STOPPING)
        return {
            "name": cfg.name,
            "state": svc.state.value,
            "pid": svc.pid,
            "restarts": svc.restarts,
            "last_error": svc.last_error,
            "reason": svc.reason,
            "registered_name": cfg.registered_name,
            "process": cfg.process,
            "host": cfg.host,
            "restart": cfg.restart,
            "uptime": round(self.clock() - svc.started_at, 3) if running else None,
        }


__all__ = [
    "IllegalTransitionError",
    "ServiceManager",
    "ServiceState",
    "transition",
]
