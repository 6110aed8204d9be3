"""Actors for ``scripts/bench.py``: one driver process per scenario, plus the peers they spawn.

Each driver is run with ``exec`` on the driver host, spawns its peers on the host it is
given, measures with ``time.perf_counter()`` inside the daemon and returns a dict of
numbers. Peers are linked to their driver (a failed driver takes them down) and end
normally when they are done, so a finished driver leaves nothing behind. Only the public
API is used (``from actord import process``).

    driver          peers                   result
    pingpong        echo                    mean round trip (us)
    stream          streamer                messages/s received
    spawn_many      noop                    processes/s spawned and EXIT received
    terminate_exit  idle                    mean terminate-to-EXIT (us) at the monitor
    idle_memory     idle                    RSS bytes per idle process of a worker
    fan_in          streamer x senders      messages/s received
    where           -                       the worker's actord.__file__ and OS pid

Cross-node scenarios (h) and (i): the peer is started on the other node by ``bench.py``
(through that node's own daemon: no remote spawn yet) and its PID given to the driver, which
neither spawns nor links it; the peer ends when the driver is done with it.

    remote_pingpong  echo (given)           mean round trip (us)
    remote_stream    go_streamer (given)    messages/s received
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import actord
from actord import process

# -- peers -------------------------------------------------------------------------------------


async def echo() -> None:
    """Answer every inbox message with "pong" and the same payload; return on "stop"."""
    inbox = process.inbox()
    send = process.send
    while True:
        msg = await inbox.receive()
        if msg.topic == "stop":
            return
        send(msg.from_, "pong", msg.payload)


async def streamer(parent: str, n: int, batch: int) -> None:
    """Say "ready", wait for "go", then send ``n`` messages, yielding every ``batch``."""
    send = process.send
    send(parent, "ready")
    await process.inbox().receive()
    for i in range(n):
        send(parent, "m", i)
        if i % batch == batch - 1:
            await asyncio.sleep(0)


async def go_streamer(n: int, batch: int) -> None:
    """Wait for "go", then send ``n`` messages to its sender, yielding every ``batch``."""
    go = await process.inbox().receive()
    to, send = go.from_, process.send
    for i in range(n):
        send(to, "m", i)
        if i % batch == batch - 1:
            await asyncio.sleep(0)


async def noop() -> None:
    """End at once (normally)."""
    return None


async def idle(parent: str) -> None:
    """Say "up" to ``parent``, then wait on the inbox; any message ends it normally."""
    process.send(parent, "up")
    await process.inbox().receive()


# -- drivers -----------------------------------------------------------------------------------


async def pingpong(host: str, n: int, warmup: int) -> dict[str, Any]:
    """(a) Mean round trip of ``n`` ping-pongs with an echo on ``host``."""
    peer = await process.spawn_linked("bench:echo", host)
    return await remote_pingpong(peer, n, warmup)


async def remote_pingpong(peer: str, n: int, warmup: int) -> dict[str, Any]:
    """(h) Mean round trip of ``n`` ping-pongs with the echo ``peer`` (on another node; (a)
    spawns its echo, then runs this), which is told to stop after."""
    inbox, send = process.inbox(), process.send

    async def rounds(count: int) -> None:
        for i in range(count):
            send(peer, "ping", i)
            msg = await inbox.receive()
            if msg.payload != i:
                raise AssertionError(f"pong {msg.payload!r} for ping {i}")

    await rounds(warmup)
    start = time.perf_counter()
    await rounds(n)
    elapsed = time.perf_counter() - start
    send(peer, "stop")
    return {"rtt_us": elapsed / n * 1e6, "n": n}


async def remote_stream(peer: str, n: int) -> dict[str, Any]:
    """(i) Messages/s of a one-way stream of ``n`` messages from the go_streamer ``peer``."""
    return await _timed_stream(peer, n)


async def _timed_stream(streamer: str, n: int) -> dict[str, Any]:
    """Send "go" to ``streamer``, receive its ``n`` messages (0 .. n-1, checked by the last);
    messages per second from "go" to the last."""
    inbox = process.inbox()
    start = time.perf_counter()
    process.send(streamer, "go")
    receive = inbox.receive
    for _ in range(n - 1):
        await receive()
    last = await receive()
    elapsed = time.perf_counter() - start
    if last.payload != n - 1:
        raise AssertionError(f"last message {last.payload!r}, expected {n - 1}")
    return {"rate": n / elapsed, "n": n}


async def stream(host: str, n: int, batch: int) -> dict[str, Any]:
    """(b)/(c) Messages/s of a one-way stream of ``n`` messages from a streamer on ``host``."""
    await process.spawn_linked("bench:streamer", host, process.pid(), n, batch)
    ready = await process.inbox().receive()
    return await _timed_stream(ready.from_, n)


async def fan_in(host: str, senders: int, per_sender: int, batch: int) -> dict[str, Any]:
    """(g) Messages/s received from ``senders`` streamers on ``host`` sending at once."""
    me = process.pid()
    await asyncio.gather(*(
        process.spawn_linked("bench:streamer", host, me, per_sender, batch)
        for _ in range(senders)
    ))
    inbox = process.inbox()
    pids = [(await inbox.receive()).from_ for _ in range(senders)]
    total = senders * per_sender
    receive = inbox.receive
    start = time.perf_counter()
    for pid in pids:
        process.send(pid, "go")
    for _ in range(total):
        await receive()
    elapsed = time.perf_counter() - start
    return {"rate": total / elapsed, "n": total}


async def spawn_many(host: str, n: int) -> dict[str, Any]:
    """(d) Processes/s: spawn ``n`` monitored noops on ``host`` at once, receive every EXIT."""
    events = process.events()
    start = time.perf_counter()
    pids = await asyncio.gather(*(process.spawn_monitored("bench:noop", host) for _ in range(n)))
    failed = 0
    for _ in range(n):
        event = await events.receive()
        if event.kind != process.event.EXIT or "error" in event.result:
            failed += 1
    elapsed = time.perf_counter() - start
    if failed or len(set(pids)) != n:
        raise AssertionError(f"{failed} of {n} EXITs were not normal ends")
    return {"rate": n / elapsed, "n": n}


async def terminate_exit(host: str, n: int) -> dict[str, Any]:
    """(e) Mean time from ``terminate`` to the EXIT at the monitor, target idle on ``host``."""
    me = process.pid()
    inbox, events = process.inbox(), process.events()
    total = 0.0
    for _ in range(n):
        pid = await process.spawn_monitored("bench:idle", host, me)
        await inbox.receive()  # "up": the target is parked on its inbox
        start = time.perf_counter()
        await process.terminate(pid)
        event = await events.receive()
        total += time.perf_counter() - start
        if event.kind != process.event.EXIT or event.from_ != pid:
            raise AssertionError(f"expected the EXIT of {pid}, got {event.kind} {event.from_}")
        if event.result != {"error": "process terminated"}:
            raise AssertionError(f"unexpected result {event.result!r}")
    return {"latency_us": total / n * 1e6, "n": n}


def _rss(os_pid: int) -> int:
    with open(f"/proc/{os_pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {os_pid}")


async def idle_memory(host: str, os_pid: int, n: int, settle: float) -> dict[str, Any]:
    """(f) RSS growth per idle process of ``host``'s worker (``os_pid``) for ``n`` processes.

    ``host`` must have one worker, used by nothing else. One process is run there first so
    one-time costs (importing this module) are not counted.
    """
    me = process.pid()
    inbox, events, send = process.inbox(), process.events(), process.send
    warm = await process.spawn_monitored("bench:idle", host, me)
    await inbox.receive()
    send(warm, "stop")
    await events.receive()
    await asyncio.sleep(settle)
    before = _rss(os_pid)
    pids = await asyncio.gather(*(
        process.spawn_monitored("bench:idle", host, me) for _ in range(n)
    ))
    for _ in range(n):
        await inbox.receive()  # every "up": all n are parked on their inbox
    await asyncio.sleep(settle)
    after = _rss(os_pid)
    for pid in pids:
        send(pid, "stop")
    for _ in range(n):
        await events.receive()
    return {"bytes_per_process": (after - before) / n, "before": before, "after": after, "n": n}


async def where() -> dict[str, Any]:
    """Which actord this worker imported (``bench.py --against`` checks it is the tree)."""
    return {"actord": actord.__file__, "os_pid": os.getpid()}
