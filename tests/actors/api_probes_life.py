"""Probe actors for the SPEC section 3 lifecycle calls: spawn*, terminate, cancel, monitor,
link, options, exec, and how a process ends (see ``api_probes`` for the conventions)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from api_probes import (
    event_dict,
    events_until_exit,
    kind,
    next_event,
    recv,
    remote,
    unknown_host,
    witness_of,
)

from actord import process
from actord.errors import ProcessFailedError

EXIT, LINK_DOWN, CANCEL = process.event.EXIT, process.event.LINK_DOWN, process.event.CANCEL

#: what helper tasks saw, per PID; read by a later probe on the same (single-worker) host
TASK_STATE: dict[str, str] = {}


# -- helper actors ---------------------------------------------------------------------------


async def self_terminator() -> str:
    """Terminate itself; the line after the await must never run."""
    await process.terminate(process.pid())
    TASK_STATE[process.pid()] = "ran on"
    return "survived"


async def self_canceller() -> dict[str, Any]:
    """Cancel itself and return the CANCEL event it got."""
    await process.cancel(process.pid(), reason="me")
    return {**event_dict(await next_event(CANCEL)), "me": process.pid()}


async def graceful() -> str:
    """Return ``stopped`` on CANCEL (the cooperative case)."""
    await next_event(CANCEL)
    return "stopped"


async def with_helper_task() -> str:
    """Run short tasks to their end, start a helper task, then return: the helper must be
    cancelled (the short tasks make the runtime forget finished ones on the way)."""
    ready, me = asyncio.Event(), process.pid()
    for _ in range(3):
        await asyncio.gather(*(asyncio.sleep(0) for _ in range(40)))

    async def helper() -> None:
        ready.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            TASK_STATE[me] = "cancelled"
            raise

    asyncio.get_running_loop().create_task(helper())
    await ready.wait()
    return "done"


class CustomError(Exception):
    """An exception class of the actor's own."""


async def custom_crasher() -> None:
    """End abnormally with a user-defined exception class."""
    raise CustomError("it broke: badly")


async def sys_exit() -> None:
    """Call ``sys.exit``: it must end this process only, never its worker."""
    sys.exit(3)


async def bad_result() -> Any:
    """Return a value that is not msgpack."""
    return {1, 2}


async def huge_result() -> int:
    """Return an int too large for msgpack."""
    return 2**80


async def exec_in_task(host: str, parent: str) -> str:
    """Exec a reporter in a helper task, then return while the exec is still waiting."""
    task = asyncio.get_running_loop().create_task(process.exec("api:reporter", host, parent))
    await recv("started")
    assert not task.done()
    return "returned"


async def exec_waiter(host: str, parent: str) -> Any:
    """Exec a reporter and wait for it (terminated by the probe while it waits)."""
    return await process.exec("api:reporter", host, parent)


# -- probes ----------------------------------------------------------------------------------


async def spawn_errors(host: str) -> dict[str, Any]:
    """NOT_FOUND for unknown ids and hosts, INVALID for bad arguments, for every spawn*."""
    out: dict[str, Any] = {}
    for fn in (process.spawn, process.spawn_monitored, process.spawn_linked,
               process.spawn_linked_monitored):
        out[fn.__name__] = [
            await kind(lambda f=fn: f("api:nope", host)),
            await kind(lambda f=fn: f("api:waiter", unknown_host(host))),
            await kind(lambda f=fn: f("api:waiter", host, object())),
            await kind(lambda f=fn: f(5, host)),
        ]
    return out


async def spawn_variants(host: str) -> dict[str, Any]:
    """Monitors and links from spawn_* are in place before the child runs its first line."""
    process.set_options(trap_links=True)
    plain = await process.spawn("api:returner", host, 1)
    mon = await process.spawn_monitored("api:crasher", host, "m")
    out: dict[str, Any] = {"plain_host": plain.startswith("{" + host + "|")}
    out["monitored"] = [[e.kind, e.from_ == mon, e.result] for e in [await next_event()]]
    lnk = await process.spawn_linked("api:crasher", host, "l")
    out["linked"] = [[e.kind, e.from_ == lnk, e.result] for e in [await next_event()]]
    both = await process.spawn_linked_monitored("api:crasher", host, "b")
    evs = [await next_event(), await next_event()]
    out["linked_monitored"] = [[e.kind, e.from_ == both, e.result] for e in evs]
    return out


async def terminate_probe(host: str) -> dict[str, Any]:
    """terminate: the target ends with "process terminated"; by name; NOT_FOUND when dead."""
    child = await process.spawn_monitored("api:waiter", host)
    out: dict[str, Any] = {"ok": await kind(lambda: process.terminate(child))}
    out["exit"] = (await next_event(EXIT, child)).result
    out["dead"] = await kind(lambda: process.terminate(child))
    out["unknown_name"] = await kind(lambda: process.terminate("no-such-name"))
    if not remote(host):  # names are node-local (SPEC 11): none for another node's process
        named = await process.spawn_monitored("api:waiter", host)
        await process.registry.register(f"term-{named}", named)
        out["by_name"] = await kind(lambda: process.terminate(f"term-{named}"))
        out["by_name_exit"] = (await next_event(EXIT, named)).result
    self_t = await process.spawn_monitored("api:self_terminator", host)
    out["self"] = (await next_event(EXIT, self_t)).result
    out["self_ran_on"] = TASK_STATE.get(self_t)
    return out


async def cancel_probe(host: str) -> dict[str, Any]:
    """cancel: CANCEL fields, ignorable without a deadline, enforced with one, argument checks."""
    me = process.pid()
    out: dict[str, Any] = {}
    child = await process.spawn_monitored("api:reporter", host, me)
    await recv("up")
    for label, deadline in [("word", "abc"), ("unit", "5 parsecs"), ("neg", -1),
                            ("bool", True), ("list", [1])]:
        out[f"bad_{label}"] = await kind(lambda d=deadline: process.cancel(child, d))
    out["bad_reason"] = await kind(lambda: process.cancel(child, reason=5))  # type: ignore[arg-type]
    await process.cancel(child, reason="r1")
    out["plain"] = (await recv("event")).payload
    process.send(child, "ping")
    out["alive_after_plain"] = (await recv("pong")).from_ == child
    t0 = time.monotonic()
    await process.cancel(child, "150ms", reason="r2")
    out["with_deadline"] = (await recv("event")).payload
    out["deadline_exit"] = (await next_event(EXIT, child)).result
    out["deadline_waited"] = time.monotonic() - t0 >= 0.1
    ms = await process.spawn_monitored("api:waiter", host)
    await process.cancel(ms, 100)
    out["int_ms_exit"] = (await next_event(EXIT, ms)).result
    out["dead"] = await kind(lambda: process.cancel(ms))
    out["unknown_name"] = await kind(lambda: process.cancel("no-such-name"))
    nice = await process.spawn_monitored("api:graceful", host)
    await process.cancel(nice, "5s")
    out["graceful_exit"] = (await next_event(EXIT, nice)).result
    out["self"] = await process.exec("api:self_canceller", host)
    out["me"] = me
    return out


async def monitor_probe(host: str) -> dict[str, Any]:
    """monitor: ALREADY_EXISTS twice, NOT_FOUND when dead; unmonitor idempotent and final."""
    out: dict[str, Any] = {}
    child = await process.spawn("api:waiter", host)
    out["first"] = await kind(lambda: process.monitor(child))
    out["twice"] = await kind(lambda: process.monitor(child))
    out["unmonitor"] = await kind(lambda: process.unmonitor(child))
    out["unmonitor_again"] = await kind(lambda: process.unmonitor(child))
    w = await witness_of(child, host)
    await process.terminate(child)
    out["after_unmonitor"] = await events_until_exit(w)
    out["dead"] = await kind(lambda: process.monitor(child))
    out["unmonitor_dead"] = await kind(lambda: process.unmonitor(child))
    out["unknown_name"] = await kind(lambda: process.monitor("no-such-name"))
    if not remote(host):  # names are node-local (SPEC 11): none for another node's process
        named = await process.spawn("api:waiter", host)
        await process.registry.register(f"mon-{named}", named)
        out["by_name"] = await kind(lambda: process.monitor(f"mon-{named}"))
        await process.terminate(named)
        out["by_name_exit"] = (await next_event(EXIT, named)).result
    queued = await process.spawn_monitored("api:waiter", host)
    await process.terminate(queued)
    # a round trip per try, no sleep: NOT_FOUND once the router handled the end, whose EXIT
    # to us went out before that reply
    while await kind(lambda: process.monitor(queued)) != "NOT_FOUND":
        pass
    await process.unmonitor(queued)
    ev = await next_event()
    out["queued_stays"] = [ev.kind, ev.from_ == queued, ev.result]
    out["unmonitor_unknown_name"] = await kind(lambda: process.unmonitor("no-such-name"))
    out["pids"] = {"child": child, "witness": w}
    return out


async def link_probe(host: str) -> dict[str, Any]:
    """link: twice is a no-op (one LINK_DOWN), NOT_FOUND when dead; unlink idempotent and final."""
    process.set_options(trap_links=True)
    out: dict[str, Any] = {}
    a = await process.spawn("api:waiter", host)
    out["link"] = await kind(lambda: process.link(a))
    out["link_again"] = await kind(lambda: process.link(a))
    w = await witness_of(a, host)
    await process.terminate(a)
    out["linked_twice"] = await events_until_exit(w)
    out["dead"] = await kind(lambda: process.link(a))
    out["unlink_dead"] = await kind(lambda: process.unlink(a))
    b = await process.spawn("api:waiter", host)
    await process.link(b)
    out["unlink"] = await kind(lambda: process.unlink(b))
    out["unlink_again"] = await kind(lambda: process.unlink(b))
    w2 = await witness_of(b, host)
    await process.terminate(b)
    out["after_unlink"] = await events_until_exit(w2)
    out["unknown_name"] = await kind(lambda: process.link("no-such-name"))
    out["unlink_unknown_name"] = await kind(lambda: process.unlink("no-such-name"))
    out["pids"] = {"a": a, "w": w, "b": b, "w2": w2}
    return out


async def options_probe() -> dict[str, Any]:
    """get_options/set_options, and INVALID for unknown options or non-bool values."""
    out: dict[str, Any] = {"default": process.get_options()}
    process.set_options(trap_links=True)
    out["set"] = process.get_options()
    out["unknown"] = await kind(lambda: process.set_options(bogus=True))
    out["not_bool"] = await kind(lambda: process.set_options(trap_links="yes"))
    out["unchanged"] = process.get_options()
    process.set_options(trap_links=False)
    out["reset"] = process.get_options()
    return out


async def reported_event() -> dict[str, Any]:
    """The next event a reporter forwarded; the reporter is then told to stop."""
    msg = await recv("event")
    process.send(msg.from_, "stop")
    return msg.payload  # type: ignore[no-any-return]


async def exec_probe(host: str) -> dict[str, Any]:
    """exec: value, ProcessFailedError, NOT_FOUND; a timeout, a cancelled wait and an ended
    caller each CANCEL the child."""
    me = process.pid()
    out: dict[str, Any] = {"value": await process.exec("api:returner", host, 1, "x")}
    try:
        await process.exec("api:crasher", host, "exec failed")
    except ProcessFailedError as e:
        out["failed"] = {"kind": e.kind, "pid_host": e.pid.startswith("{" + host + "|"),
                         "error": e.error}
    out["unknown_id"] = await kind(lambda: process.exec("api:nope", host))
    out["unknown_host"] = await kind(lambda: process.exec("api:returner", unknown_host(host)))
    out["bad_timeout"] = await kind(lambda: process.exec("api:returner", host, timeout=-1))
    try:
        await process.exec("api:reporter", host, me, timeout=0.2)
        out["timeout"] = "no timeout"
    except TimeoutError:
        await recv("up")
        out["timeout"] = await reported_event()
    task = asyncio.get_running_loop().create_task(process.exec("api:reporter", host, me))
    await recv("up")
    task.cancel()
    out["cancelled"] = await reported_event()
    mon = await process.spawn_monitored("api:exec_in_task", host, host, me)
    await recv("up")  # the exec child runs: now let its caller return
    process.send(mon, "started")
    out["caller_returned"] = (await next_event(EXIT, mon)).result
    out["caller_ended"] = await reported_event()
    waiter = await process.spawn_monitored("api:exec_waiter", host, host, me)
    await recv("up")  # the exec child runs: now end its caller the hard way
    await process.terminate(waiter)
    out["caller_terminated"] = await reported_event()
    out["waiter"] = waiter
    out["me"] = me
    return out


async def ending_probe() -> dict[str, Any]:
    """Returning cancels the process's other tasks (same worker: host t:a only)."""
    child = await process.spawn_monitored("api:with_helper_task", "t:a")
    result = (await next_event(EXIT, child)).result
    return {"result": result, "helper": TASK_STATE.get(child)}
