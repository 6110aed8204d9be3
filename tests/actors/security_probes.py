"""Actors for the permission matrix (tests/test_security.py).

The probe runs as the CLI's actor (``system:admin``), sets up targets, and spawns a *subject*
under a restricted actor and scope that attempts one call and returns what happened. The
probe then checks that a denied call had no effect.
"""

from actord import channel, errors, process


async def idle():
    """Wait forever (never reads its inbox)."""
    await process.events().receive()
    await process.events().receive()


async def quick():
    return 1


async def recorder():
    """Count inbox messages and CANCEL events; answer "count?" with [messages, cancels].
    Events first: a CANCEL queued before a "count?" (the probe asks after the subject's
    cancel returned) is counted before the answer, even when both wait at once."""
    inbox, events = process.inbox(), process.events()
    messages = cancels = 0
    while True:
        ch, value = await channel.select(events, inbox)
        if ch is events and value.kind == process.event.CANCEL:
            cancels += 1
        elif ch is inbox and value.topic == "count?":
            process.send(value.from_, "count", messages, cancels)
        elif ch is inbox:
            messages += 1


async def subject(action, target, name):
    """Attempt one call; return "ok" or the error kind."""
    try:
        if action in ("process.spawn", "process.host"):
            await process.spawn("t:idle", "t:a")
        elif action == "process.spawn.monitored":
            await process.spawn_monitored("t:idle", "t:a")
        elif action == "process.spawn.linked":
            await process.spawn_linked("t:idle", "t:a")
        elif action == "process.exec":
            await process.exec("t:quick", "t:a")
        elif action == "process.send":
            process.send(target, "hello")
        elif action == "process.terminate":
            await process.terminate(target)
        elif action == "process.cancel":
            await process.cancel(target)
        elif action == "process.monitor":
            await process.monitor(target)
        elif action == "process.unmonitor":
            await process.monitor(target)
            await process.unmonitor(target)
        elif action == "process.link":
            try:
                await process.link(target)
            except errors.ProcessError as e:
                raise RuntimeError(e.kind) from None
            raise RuntimeError("ok")  # an abnormal end: a linked target dies with us
        elif action == "process.unlink":
            await process.link(target)
            await process.unlink(target)
        elif action == "process.registry.register":
            await process.registry.register(name, target)
        elif action == "process.registry.unregister":
            await process.registry.unregister(name)
        elif action == "process.context":
            process.with_context({"k": "v"})
        elif action == "process.security":
            process.SpawnBuilder().with_actor({"id": "someone:else", "meta": {}})
        elif action == "escalate":
            process.SpawnBuilder().with_actor({"id": "system:admin", "meta": {}})
        else:
            return f"unknown action {action}"
    except errors.ProcessError as e:
        return e.kind
    return "ok"


async def _ask(target, topic):
    process.send(target, topic)
    _, msg = await channel.select(process.inbox(), timeout=5)
    return msg.payload


async def probe(action, scope, name):
    """Run ``subject(action)`` as actor test:subject under ``scope``; report result + effect."""
    events = process.events()
    target = await process.spawn("t:recorder", "t:b")
    await process.monitor(target)
    if action == "process.registry.unregister":
        await process.registry.register(name, target)
    builder = process.SpawnBuilder().with_actor({"id": "test:subject"}).with_scope([scope])
    subj = await builder.spawn_monitored("t:subject", "t:b", action, target, name)
    exits = {}
    while subj not in exits:  # the target's EXIT may come first (when it is terminated)
        ev = await events.receive()
        if ev.kind == process.event.EXIT:
            exits[ev.from_] = ev.result
    result = exits[subj].get("value", exits[subj].get("error"))
    if action == "process.link":  # the subject reports by failing: "RuntimeError: <result>"
        result = result.removeprefix("RuntimeError: ")
    ends_target = action in ("process.terminate", "process.link") and result == "ok"
    effect = {}
    if ends_target:
        if target not in exits:
            ev = await events.receive()  # the target's EXIT (it was terminated)
            exits[ev.from_] = ev.result
        effect["target_exit"] = exits[target]
    else:
        # anything the subject did reached the target before this query (causality)
        effect["counts"] = await _ask(target, "count?")
    try:
        effect["name"] = process.registry.lookup(name)
    except errors.NotFoundError:
        effect["name"] = None
    if not ends_target:
        await process.terminate(target)
    return {"result": result, "effect": effect, "target": target}


async def trier():
    """On each inbox "try", attempt a send to itself; on CANCEL return the outcomes."""
    inbox, events = process.inbox(), process.events()
    outcomes = []
    while True:
        ch, value = await channel.select(inbox, events)
        if ch is events and value.kind == process.event.CANCEL:
            return outcomes
        if ch is inbox and value.topic == "try":
            try:
                process.send(process.pid(), "self")
                outcomes.append("ok")
            except errors.PermissionDeniedError:
                outcomes.append("PERMISSION_DENIED")


async def start_trier(scope):
    builder = process.SpawnBuilder().with_actor({"id": "test:trier"}).with_scope([scope])
    return await builder.spawn("t:trier", "t:a")


async def stop_trier(pid):
    await process.monitor(pid)
    await process.cancel(pid)
    while True:
        ev = await process.events().receive()
        if ev.kind == process.event.EXIT and ev.from_ == pid:
            return ev.result
