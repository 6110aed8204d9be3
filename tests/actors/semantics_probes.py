"""Probe actors for the SPEC section 4 tests (``tests/test_semantics.py``).

Each ``scenario_*`` is exec'd from a test: it spawns probes on the hosts it is given, drives
them with messages and events, and returns what it observed; the test asserts on that. No
probe sleeps to synchronise: every wait is for a message or an event, with a timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actord import channel, process
from actord.errors import NotFoundError

#: every wait in a probe is bounded by this (seconds); a hang fails the test, never blocks it
WAIT = 10.0


# -- helpers -------------------------------------------------------------------------------------
async def fence() -> None:
    """A round trip through the router: events it emitted for us before now have arrived."""
    await process.registry.unregister("semantics-probes-fence")


def lookup(name: str) -> str | None:
    """The PID holding ``name`` in this worker's view of the registry, or None."""
    try:
        return process.registry.lookup(name)
    except NotFoundError:
        return None


def drain(ch: channel.Channel) -> list[Any]:
    """Everything queued in ``ch`` now, without waiting."""
    out = []
    while True:
        try:
            out.append(ch.receive_nowait())
        except channel.Empty:
            return out


def event_row(ev: Any) -> list[Any]:
    """An event as a comparable list ``[kind, from_, result]``."""
    return [ev.kind, ev.from_, ev.result]


async def receive(ch: channel.Channel) -> Any:
    """One item from ``ch``, waiting at most ``WAIT`` seconds."""
    return (await channel.select(ch, timeout=WAIT))[1]


async def next_event(kind: str) -> Any:
    """The next event of ``kind`` from ``events()`` (any other kind is an error)."""
    ev = await receive(process.events())
    if ev.kind != kind:
        raise AssertionError(f"expected {kind}, got {ev!r}")
    return ev


async def forever() -> None:
    """Park the calling process until it is ended from outside."""
    await asyncio.Event().wait()


# -- small probes ----------------------------------------------------------------------------------
async def value(v: Any) -> Any:
    """Return ``v`` at once."""
    return v


async def idle() -> None:
    """Wait on the inbox forever; never calls ``events()``."""
    inbox = process.inbox()
    while True:
        await inbox.receive()


async def numbered(dest: str, n: int, topics: list[str], how: str) -> int:
    """Send ``n`` numbered messages to ``dest`` (topics in turn), then end as ``how`` says."""
    for i in range(n):
        process.send(dest, topics[i % len(topics)], i)
    if how == "raise":
        raise RuntimeError(f"after {n}")
    return n


async def flood(dest: str, tag: str, n: int) -> None:
    """Send ``n`` messages ``[tag, i]`` to ``dest``."""
    for i in range(n):
        process.send(dest, "flood", tag, i)
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the worker's loop flush (and others run)


async def relay(dest: str) -> None:
    """Forward every inbox message's payload to ``dest`` (same topic)."""
    async for msg in process.inbox():
        process.send(dest, msg.topic, msg.payload)


async def registrant(name: str, tell: str) -> None:
    """Register ``name``, then tell ``tell`` about it; stay alive (holding it) until ended."""
    await process.registry.register(name)
    process.send(tell, "name", name, process.pid())
    await forever()


async def unregistrant(name: str, tell: str) -> None:
    """Register then unregister ``name``, then tell ``tell``; stay alive until ended."""
    await process.registry.register(name)
    await process.registry.unregister(name)
    process.send(tell, "gone", name)
    await forever()


async def name_checker(n: int) -> list[list[Any]]:
    """For ``n`` messages ``[name, pid]`` (or ``gone: name``): resolve the name at once."""
    inbox = process.inbox()
    out = []
    for _ in range(n):
        msg = await receive(inbox)
        if msg.topic == "name":
            name, pid = msg.payload
            out.append([name, lookup(name) == pid])
        else:
            out.append([msg.payload, lookup(msg.payload) is None])
    return out


async def order_checker(n_items: int, topics: list[str]) -> dict[str, Any]:
    """Receive ``n_items`` numbered items (messages on ``listen(topics[0])`` / inbox, CANCELs).

    Every item carries its sender-side sequence number. When item ``k`` is taken, items
    ``0..k-1`` must have arrived (taken before, or queued in some channel): that is per-pair
    order across messages, listen channels and events.
    """
    listened = process.listen(topics[0], message=True)
    inbox, events = process.inbox(), process.events()
    chans = (listened, inbox, events)
    taken: list[int] = []
    violations: list[Any] = []
    last = {id(c): -1 for c in chans}
    while len(taken) < n_items:
        ch, item = await channel.select(*chans, timeout=WAIT)
        seq = int(item.reason) if ch is events else item.payload
        if seq <= last[id(ch)]:
            violations.append(["channel order", seq])
        last[id(ch)] = seq
        present = len(taken) + sum(len(c) for c in chans)  # taken, queued (not counting item)
        if present < seq:
            violations.append(["overtaken", seq, present])
        if ch is listened and item.topic != topics[0]:
            violations.append(["listen got topic", item.topic])
        if ch is inbox and item.topic == topics[0]:
            violations.append(["inbox got listened topic", item.topic])
        taken.append(seq)
    return {"violations": violations, "taken": sorted(taken) == list(range(n_items))}


async def holder(parent: str) -> dict[str, Any]:
    """Hold messages until channels exist (SPEC 4.2); report where each one went.

    Phase 1: wait for a CANCEL (sent after the first messages, so they are all held), then
    create ``listen("a")``, ``inbox()``, ``listen("b")`` in that order. Phase 2: tell the
    parent we are ready, wait for a second CANCEL (after more messages), report everything.
    """
    events = process.events()
    await next_event(process.event.CANCEL)
    a = process.listen("a")
    got = {"a": drain(a)}
    inbox = process.inbox()
    got["inbox"] = [[m.topic, m.payload] for m in drain(inbox)]
    b = process.listen("b")
    got["b"] = drain(b)
    process.send(parent, "ready")
    await next_event(process.event.CANCEL)
    got["a2"] = drain(a)
    got["b2"] = drain(b)
    got["inbox2"] = [[m.topic, m.payload] for m in drain(inbox)]
    got["events"] = len(events)
    return got


async def drainer() -> str:
    """Never open the inbox until told: each CANCEL with reason ``k`` receives ``k`` messages."""
    events = process.events()
    while True:
        ev = await events.receive()
        if ev.reason == "stop":
            return "stopped"
        inbox = process.inbox()
        for _ in range(int(ev.reason)):
            await receive(inbox)


async def ender(parent: str, how: str, names: list[str], bomb_host: str) -> Any:
    """Register ``names``, report ready to ``parent``, then end the way ``how`` says.

    ``return``/``raise`` end on a "go" message; ``terminate`` and ``cancel_deadline`` wait to
    be ended from outside (the latter ignoring CANCEL); ``cancel_return`` returns on CANCEL;
    ``self_terminate`` terminates itself on "go"; ``link_failure`` is linked (untrapped) to a
    bomb that raises on "go".
    """
    for name in names:
        await process.registry.register(name)
    bomb = ""
    if how == "link_failure":
        bomb = await process.spawn_linked("t:sem.bomb", bomb_host)
    process.send(parent, "ready", bomb)
    inbox = process.inbox()
    if how in ("return", "raise", "self_terminate"):
        await receive(inbox)
        if how == "raise":
            raise ValueError("boom")
        if how == "self_terminate":
            await process.terminate(process.pid())
        return "bye"
    if how == "cancel_return":
        await next_event(process.event.CANCEL)
        return "cancelled"
    if how == "cancel_deadline":
        events = process.events()
        while True:  # ignore CANCEL: the runtime must enforce the deadline
            await events.receive()
    await forever()


async def bomb() -> None:
    """Raise ``RuntimeError("bomb")`` on the first inbox message."""
    await process.inbox().receive()
    raise RuntimeError("bomb")


async def watcher(parent: str, target: str, names: list[str], trap: bool, link_down: bool) -> Any:
    """Monitor ``target`` (and link to it, trapping, if ``trap``); record what arrives.

    At the EXIT event, look up ``names`` at once: SPEC 4.4 releases them before any EXIT.
    Then expect a LINK_DOWN if ``link_down``, fence, and count any further event.
    """
    process.set_options(trap_links=trap)
    await process.monitor(target)
    if trap:
        await process.link(target)
    process.send(parent, "watching")
    events = process.events()
    ev = await next_event(process.event.EXIT)
    names_at_exit = {name: lookup(name) for name in names}
    rows = [event_row(ev)]
    if link_down:
        rows.append(event_row(await next_event(process.event.LINK_DOWN)))
    await fence()
    return {"events": rows, "names_at_exit": names_at_exit, "extra": len(events)}


async def chain(hosts: list[str], parent: str, index: int = 0) -> None:
    """A chain of linked processes, member ``index`` on ``hosts[index]``; each raises on "die".

    Nobody in the chain calls ``events()`` or traps links.
    """
    if index + 1 < len(hosts):
        await process.spawn_linked("t:sem.chain", hosts[index + 1], hosts, parent, index + 1)
    process.send(parent, "member", index, process.pid())
    await process.inbox().receive()
    raise RuntimeError("die")


# -- scenarios (exec'd from the tests) -------------------------------------------------------------
async def scenario_order_then_exit(host: str, n: int, how: str) -> dict[str, Any]:
    """A child sends ``n`` numbered messages then ends; when its EXIT arrives, all are here."""
    process.set_options(trap_links=True)
    inbox, events = process.inbox(), process.events()
    child = await process.spawn_linked_monitored(
        "t:sem.numbered", host, process.pid(), n, ["n"], how)
    ev = await next_event(process.event.EXIT)
    msgs = drain(inbox)  # all of them must be queued already: they were sent before the EXIT
    rows = [event_row(ev)]
    if how == "raise":
        rows.append(event_row(await next_event(process.event.LINK_DOWN)))
    await fence()
    return {
        "payloads": [m.payload for m in msgs],
        "from_child": all(m.from_ == child for m in msgs),
        "events": rows,
        "extra": len(events),
        "child": child,
    }


async def scenario_mixed_order(host: str, rounds: int) -> dict[str, Any]:
    """Interleave messages of two topics and CANCELs to one receiver; check every arrival."""
    checker = await process.spawn_monitored(
        "t:sem.order_checker", host, 3 * rounds, ["a", "b"])
    seq = 0
    for _ in range(rounds):
        process.send(checker, "a", seq)
        process.send(checker, "b", seq + 1)
        await process.cancel(checker, reason=str(seq + 2))
        seq += 3
    ev = await next_event(process.event.EXIT)
    return ev.result


async def scenario_many_senders(hosts: list[str], n: int) -> dict[str, Any]:
    """One sender per host floods us; per sender: every message once, in order."""
    inbox = process.inbox()
    senders = [
        await process.spawn_monitored("t:sem.flood", host, process.pid(), f"s{i}", n)
        for i, host in enumerate(hosts)
    ]
    for _ in senders:
        ev = await next_event(process.event.EXIT)
        if "error" in ev.result:
            raise AssertionError(f"sender failed: {ev.result}")
    # every EXIT is in, so every message sent before it is queued (SPEC 4.1)
    seen: dict[str, list[int]] = {}
    for msg in drain(inbox):
        tag, i = msg.payload
        seen.setdefault(tag, []).append(i)
    await fence()
    late = len(drain(inbox))
    return {"in_order": all(seen.get(f"s{i}") == list(range(n)) for i in range(len(hosts))),
            "counts": {k: len(v) for k, v in seen.items()}, "late": late}


async def scenario_name_causality(reg_hosts: list[str], checker_host: str,
                                  relay_host: str, rounds: int) -> list[list[Any]]:
    """Registrants on ``reg_hosts`` tell a checker (directly, or through a relay) their name."""
    me = process.pid().strip("{}")
    checker = await process.spawn_monitored("t:sem.name_checker", checker_host, 2 * rounds)
    via = await process.spawn("t:sem.relay", relay_host, checker)
    spawned = []
    for i in range(rounds):
        host = reg_hosts[i % len(reg_hosts)]
        tell = checker if i % 2 == 0 else via
        spawned.append(await process.spawn("t:sem.registrant", host, f"{me}-n{i}", tell))
        spawned.append(await process.spawn("t:sem.unregistrant", host, f"{me}-u{i}", tell))
    ev = await next_event(process.event.EXIT)
    for pid in [*spawned, via]:
        await process.terminate(pid)
    if "error" in ev.result:
        raise AssertionError(f"checker failed: {ev.result}")
    return ev.result["value"]  # type: ignore[no-any-return]


async def scenario_hold(host: str) -> dict[str, Any]:
    """Messages sent before the receiver has channels are held, then routed per SPEC 4.2."""
    inbox = process.inbox()
    h = await process.spawn_monitored("t:sem.holder", host, process.pid())
    for topic, v in [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("b", 5)]:
        process.send(h, topic, v)
    await process.cancel(h)  # arrives after the five messages: they are all held now
    ready = await receive(inbox)
    assert ready.topic == "ready", ready
    for topic, v in [("a", 6), ("b", 7), ("c", 8)]:
        process.send(h, topic, v)
    await process.cancel(h)
    ev = await next_event(process.event.EXIT)
    return ev.result


async def scenario_events_only(host: str) -> dict[str, Any]:
    """An EXIT goes to ``events()`` only, never to the inbox or a listen on its kind's name."""
    inbox = process.inbox()
    lst = process.listen(process.event.EXIT, message=True)
    child = await process.spawn_monitored("t:sem.value", host, 42)
    ev = await receive(process.events())
    await fence()
    out = {"event": [ev.kind, ev.from_ == child, ev.result],
           "inbox": len(inbox), "listen": len(lst)}
    process.send(process.pid(), process.event.EXIT, "not an event")
    msg = await receive(lst)
    await fence()
    out["message"] = [msg.topic, msg.payload, len(process.events())]
    return out


async def scenario_end(how: str, host: str, watch_hosts: list[str]) -> dict[str, Any]:
    """End a process ``how``; report what its monitors, trapping and plain link partners saw."""
    me = process.pid()
    inbox = process.inbox()
    names = [f"{me.strip('{}')}-end-{i}" for i in (1, 2)]
    target = await process.spawn_monitored("t:sem.ender", host, me, how, names, host)
    ready = await receive(inbox)
    bomb = ready.payload
    abnormal = how not in ("return", "cancel_return")
    watchers = []
    for i, whost in enumerate(watch_hosts):
        trap = i % 2 == 1
        watchers.append(await process.spawn_monitored(
            "t:sem.watcher", whost, me, target, names, trap, trap and abnormal))
        assert (await receive(inbox)).topic == "watching"
    # a plain (untrapped) partner, linked to the target, which never calls events()
    plain = await process.spawn_monitored("t:sem.linker", watch_hosts[0], me, target)
    assert (await receive(inbox)).topic == "linked"
    if how in ("return", "raise", "self_terminate"):
        process.send(target, "go")
    elif how == "terminate":
        await process.terminate(target)
    elif how == "cancel_return":
        await process.cancel(target)
    elif how == "cancel_deadline":
        await process.cancel(target, "150ms")
    elif how == "link_failure":
        process.send(bomb, "go")
    pending = {target, *watchers} | ({plain} if abnormal else set())
    exits: dict[str, list[Any]] = {}
    names_at_exit: dict[str, str | None] = {}
    while pending:
        ev = await next_event(process.event.EXIT)
        if ev.from_ == target:
            names_at_exit = {name: lookup(name) for name in names}
        exits.setdefault(ev.from_, []).append(ev.result)
        pending.discard(ev.from_)
    if not abnormal:  # the partner survived a normal end; end it now to prove it was alive
        await process.terminate(plain)
        exits.setdefault(plain, []).append((await next_event(process.event.EXIT)).result)
    await fence()
    return {
        "target": exits.pop(target),
        "names_at_exit": names_at_exit,
        "plain": exits.pop(plain),
        "watchers": [exits.pop(w) for w in watchers],
        "other_exits": exits,
        "extra_events": len(process.events()),
    }


async def linker(parent: str, target: str) -> None:
    """Link (untrapped) to ``target``, tell ``parent``, then wait on the inbox forever."""
    await process.link(target)
    process.send(parent, "linked")
    await idle()


async def scenario_chain(hosts: list[str], fail_at: int) -> dict[str, Any]:
    """A linked chain across ``hosts``; member ``fail_at`` raises; the failure spreads."""
    inbox = process.inbox()
    await process.spawn("t:sem.chain", hosts[0], hosts, process.pid())
    members = sorted([(await receive(inbox)).payload for _ in hosts])
    pids = [pid for _, pid in members]
    for pid in pids:
        await process.monitor(pid)
    process.send(pids[fail_at], "die")
    exits: dict[str, list[Any]] = {}
    while len(exits) < len(pids):
        ev = await next_event(process.event.EXIT)
        exits.setdefault(ev.from_, []).append(ev.result)
    await fence()
    for ev in drain(process.events()):
        exits.setdefault(ev.from_, []).append(ev.result)
    return {"failed": pids[fail_at], "exits": exits}


async def burst_and_die(dest: str, n: int) -> None:
    """Send ``n`` numbered messages, let them be written, then SIGKILL our own worker."""
    import os
    import signal

    for i in range(n):
        process.send(dest, "n", i)
    await asyncio.sleep(0)  # the batched frames are written to the router socket first
    os.kill(os.getpid(), signal.SIGKILL)


async def scenario_crash_order(host: str, n: int) -> dict[str, Any]:
    """A sender's worker dies right after a burst: no message of it may follow its EXIT."""
    inbox = process.inbox()
    child = await process.spawn_monitored("t:sem.burst_and_die", host, process.pid(), n)
    ev = await next_event(process.event.EXIT)
    before = [m.payload for m in drain(inbox)]
    for _ in range(3):
        await fence()
    after = [m.payload for m in drain(inbox)]
    return {"exit": event_row(ev), "child": child, "prefix": before == list(range(len(before))),
            "before": len(before), "after": [*after[:5], len(after)]}


async def double_cancel_past_deadline(host: str) -> Any:
    """Two CANCELs with an already-past deadline reach the target in one batch: it ends with
    "cancel deadline exceeded" and its worker survives (regression: uvloop's call_at returns
    a Handle without .when() for a past time, which once crashed the worker)."""
    import asyncio

    target = await process.spawn_monitored("t:sem.forever", host)
    await asyncio.gather(process.cancel(target, 0), process.cancel(target, 0))
    while True:
        ev = await process.events().receive()
        if ev.kind == process.event.EXIT and ev.from_ == target:
            return ev.result


async def scenario_exec_messages_first(host: str, n: int) -> dict[str, Any]:
    """An exec child floods us, then returns: when exec returns, all its messages are queued
    (its result comes after its messages, as its EXIT would)."""
    inbox = process.inbox()
    await process.exec("t:sem.flood", host, process.pid(), "x", n)
    got = [msg.payload[1] for msg in drain(inbox)]
    return {"n": len(got), "in_order": got == list(range(len(got)))}
