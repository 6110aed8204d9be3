"""Probe actors for the registry (SPEC section 3) and context / SpawnBuilder (SPEC section 6).

See ``api_probes`` for the conventions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from api_probes import dump, kind, next_event, reap, recv

from actord import ctx, process

EXIT, LINK_DOWN = process.event.EXIT, process.event.LINK_DOWN


# -- helper actors ---------------------------------------------------------------------------


async def self_register(name: str, parent: str) -> None:
    """Register ``name`` for itself, tell ``parent`` (nothing else), then wait."""
    await process.registry.register(name)
    process.send(parent, "registered")
    await process.inbox().receive()


async def own_name(name: str) -> list[Any]:
    """Resolve ``name`` first thing: with ``with_name`` it is this process's own PID."""
    found = process.registry.lookup(name)
    return [found, process.pid()]


async def ctx_parent(host: str) -> dict[str, Any]:
    """Its own context, a plain child's (inherited) and an extended child's (merged)."""
    return {
        "mine": ctx.all(),
        "get": ctx.get("request_id"),
        "child": await process.exec("api:ctx_reader", host),
        "extended": await process.with_context({"n": 2, "extra": True}).exec(
            "api:ctx_reader", host),
    }


# -- registry probes -------------------------------------------------------------------------


async def registry_probe(host: str) -> dict[str, Any]:
    """register/lookup/unregister: defaults, no-op, ALREADY_EXISTS, NOT_FOUND, INVALID."""
    me = process.pid()
    name, other = f"reg-{me}", f"reg-other-{me}"
    out: dict[str, Any] = {"register": await kind(lambda: process.registry.register(name))}
    out["lookup_self"] = process.registry.lookup(name) == me
    out["again_same"] = await kind(lambda: process.registry.register(name, me))
    rec = await process.spawn_monitored("api:recorder", host)
    out["taken"] = await kind(lambda: process.registry.register(name, rec))
    out["for_other"] = await kind(lambda: process.registry.register(other, rec))
    out["lookup_other"] = process.registry.lookup(other) == rec
    process.send(other, "via-name", 1)
    out["delivered"] = await dump(other)
    out["unregister"] = await process.registry.unregister(other)
    out["unregister_again"] = await process.registry.unregister(other)
    out["lookup_gone"] = await kind(lambda: process.registry.lookup(other))
    out["send_gone"] = await kind(lambda: process.send(other, "t"))
    await process.terminate(rec)
    await next_event(EXIT, rec)
    out["dead_pid"] = await kind(lambda: process.registry.register(other, rec))
    out["unknown"] = await kind(lambda: process.registry.lookup("no-such-name"))
    for label, bad in [("empty", ""), ("pid_like", "{x"), ("int", 5)]:
        out[f"register_{label}"] = await kind(lambda b=bad: process.registry.register(b))
        out[f"lookup_{label}"] = await kind(lambda b=bad: process.registry.lookup(b))
        out[f"unregister_{label}"] = await kind(lambda b=bad: process.registry.unregister(b))
    out["register_bad_pid"] = await kind(lambda: process.registry.register(other, "nobody"))
    out["me_still"] = process.registry.lookup(name) == me
    await process.registry.unregister(name)
    return out


async def registry_causality(host: str) -> dict[str, Any]:
    """A name registered elsewhere resolves once its owner says so; its end releases it."""
    me = process.pid()
    name = f"causal-{me}"
    child = await process.spawn_monitored("api:self_register", host, name, me)
    await recv("registered")
    out: dict[str, Any] = {"resolved": process.registry.lookup(name) == child}
    await process.terminate(name)
    await next_event(EXIT, child)
    out["released"] = await kind(lambda: process.registry.lookup(name))
    return out


# -- context and SpawnBuilder probes ---------------------------------------------------------


async def context_probe(host: str) -> dict[str, Any]:
    """with_context values reach the child (ctx.get/all), its children inherit and extend them."""
    out = await process.with_context({"request_id": "123", "n": 1}).exec(
        "api:ctx_parent", host, host)
    out["none"] = await process.exec("api:ctx_reader", host)
    return out  # type: ignore[no-any-return]


async def builder_probe(host: str) -> dict[str, Any]:
    """A SpawnBuilder is immutable: each with_* returns a new one, the old one is unchanged."""
    base = process.with_context({"a": 1})
    more = base.with_context({"b": 2})
    named = base.with_name(f"unused-{process.pid()}")
    out: dict[str, Any] = {
        "distinct": base is not more and base is not named,
        "base": (await base.exec("api:ctx_reader", host))["all"],
        "more": (await more.exec("api:ctx_reader", host))["all"],
        "base_again": (await base.exec("api:ctx_reader", host))["all"],
        "override": (await more.with_context({"a": 9}).exec("api:ctx_reader", host))["all"],
    }
    try:
        base.name = "x"  # type: ignore[misc]
        out["frozen"] = False
    except dataclasses.FrozenInstanceError:
        out["frozen"] = True
    bad: dict[str, Any] = {
        "not_dict": lambda: process.with_context(["a"]),  # type: ignore[arg-type]
        "int_key": lambda: process.with_context({1: "a"}),  # type: ignore[dict-item]
        "set_value": lambda: process.with_context({"a": {1}}),
        "object_value": lambda: base.with_context({"a": object()}),
        "message_topic": lambda: base.with_message("", 1),
        "message_at_topic": lambda: base.with_message("@x", 1),
        "message_value": lambda: base.with_message("t", {1}),
        "name_empty": lambda: base.with_name(""),
        "name_int": lambda: base.with_name(5),  # type: ignore[arg-type]
        "actor": lambda: base.with_actor("someone"),  # type: ignore[arg-type]
        "scope": lambda: base.with_scope("workers"),  # type: ignore[arg-type]
        "spawn_arg": lambda: base.spawn("api:waiter", host, object()),
    }
    out["invalid"] = {label: await kind(call) for label, call in bad.items()}
    return out


async def with_message_probe(host: str) -> dict[str, Any]:
    """with_message queues messages (from_ "") ahead of anything sent after spawn returns."""
    rec = await (
        process.with_context({})
        .with_message("q1", 1)
        .with_message("q2", 2, (3,))
        .with_message("q3")
        .spawn("api:recorder", host)
    )
    process.send(rec, "live", 4)
    rows = await dump(rec)
    await reap(rec)
    return {"rows": rows, "me": process.pid()}


async def with_name_probe(host: str) -> dict[str, Any]:
    """with_name claims the name before the child runs, or signals the holder instead."""
    me = process.pid()
    out: dict[str, Any] = {}
    fresh = f"fresh-{me}"
    found, own = await process.with_context({}).with_name(fresh).exec("api:own_name", host, fresh)
    out["claimed_before_run"] = found == own
    name = f"held-{me}"
    holder = await process.with_context({}).with_name(name).spawn("api:recorder", host)
    out["holder_named"] = process.registry.lookup(name) == holder
    again = await (
        process.with_context({}).with_name(name).with_message("q", 7).with_message("r")
        .spawn("api:named_marker", host)
    )
    out["same_pid"] = again == holder
    process.send(name, "after", 8)
    out["holder_got"] = await dump(holder)
    process.set_options(trap_links=True)
    mon = await process.with_context({}).with_name(name).spawn_linked_monitored(
        "api:named_marker", host)
    out["monitored_same"] = mon == holder
    await process.terminate(holder)
    out["events"] = [[e.kind, e.from_ == holder, e.result]
                     for e in [await next_event(), await next_event()]]
    out["me"] = me
    return out
