"""The receiving job of a worker's direct link: batches from other nodes' workers judged
and delivered, the router's frames held behind a fence, messages that came before their
receiver's START (the rules: :mod:`actord.core.direct`).

Invariants: a batch is delivered only when its stream's verdict is ``ok``, and each run is
checked as it is delivered (a peer's bytes never raise out of here); the router's frames
after a FENCE are handled after the batches it names, or once it is moot or given up
(``node_timeout``: a lost batch, the pair breaks); the router's frames after a GONE (the
dead worker's processes' EXITs) are handled after every batch NATS had routed to us from
that worker, and its batches after those are dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from actord.core import wire
from actord.core.direct import DirectBatch, check_direct, instance_of, serial_of, subject
from actord.messages import Message
from actord.worker.direct_state import DirectState, log

_MAX_ADDRESS = wire.MAX_ADDRESS
_decode_value = wire.decode_value

#: messages waiting for a process of ours that has not started yet (all of them together)
MAX_EARLY = 100_000
#: batches waiting for a pair this worker's router has not heard of yet (beyond: dropped)
MAX_HELD = 10_000
#: the first byte of a marker a worker publishes to its own subject: 0xc1 is never used by
#: msgpack, so a marker is never a batch (nor a batch a marker)
MARKER = b"\xc1"
#: the events that tell a process's end (what a broken pair turns into "node down")
_ENDS = (wire.EV_EXIT, wire.EV_LINK_DOWN, wire.EV_EXEC)
#: seconds of the first request that asks NATS whether a dead worker's connection is closed
#: (doubled while its subscription is still there, up to PROBE_MAX)
PROBE_FIRST, PROBE_MAX = 0.02, 0.25


class DirectReceive(DirectState):
    """Receiving (a DirectLink job)."""

    async def _on_batch(self, msg: Any) -> None:
        data = msg.data
        if data[:1] == MARKER:
            marker = self._markers.pop(data, None)
            if marker is not None and not marker.done():
                marker.set_result(None)
            return
        b = check_direct(data, self.node)
        if b is None:
            self._malformed(f"batch on {msg.subject}", None)
            return
        self._judge(b)
        if self._holding:
            self._check_hold()

    def _judge(self, b: DirectBatch) -> None:
        verdict, expected = self.inbound.judge(b)
        if verdict == "ok":
            self._count(b.node, 1, self._deliver(b))
        elif verdict == "hold":
            if len(self._held) >= MAX_HELD:
                self._count(b.node, 3, 1)
                log.debug("cluster: too many held batches: one from %s dropped", b.node)
                return
            self._held.append((time.monotonic() + self.timeout, b))
            self._arm()
        elif verdict == "gap":
            self._count(b.node, 2, 1)
            self._break(b.node, f"gap: batch {b.seq} from worker {b.instance}, expected "
                                f"{expected}")
        else:  # stale, gone: from before a cut, or of a dead worker
            self._count(b.node, 3, 1)
            log.debug("cluster: %s batch from %s worker %d: %d runs dropped", verdict,
                      b.node, b.instance, len(b.frames))

    def _deliver(self, b: DirectBatch) -> int:
        """Each run of an accepted batch checked at the boundary (a list: our dest, a sender
        of its node, a topic, then payloads within the size rule) and its messages delivered,
        in one pass: this runs for every message from another node. A malformed run drops
        the rest of the batch and breaks the pair. Returns the messages delivered."""
        procs = self.rt.procs
        decode = _decode_value
        theirs = "{" + b.node + "@"
        max_frame = self.rt.max_frame
        delivered = 0
        for run in b.frames:
            if type(run) is list and len(run) > 3:
                dest, from_, topic = run[0], run[1], run[2]
                if (type(dest) is str and type(from_) is str and type(topic) is str
                        and from_.startswith(theirs) and len(topic) + len(dest) <= _MAX_ADDRESS
                        and len(from_) <= _MAX_ADDRESS):
                    proc = procs.get(dest)
                    for payload in run[3:]:
                        if type(payload) is not bytes or len(payload) > max_frame:
                            break
                        try:
                            value = decode(payload)
                        except Exception:  # a peer's bytes: any decoding failure is malformed
                            break
                        if proc is None:
                            self._undelivered(dest, Message(topic, from_, value))
                        else:
                            proc.deliver(Message(topic, from_, value))
                        delivered += 1
                    else:
                        continue
            self._malformed("run", b.node)
            break
        return delivered

    def _malformed(self, what: str, node: str | None) -> None:
        """A malformed batch, frame or payload from ``node`` (None: not known): counted, the
        first logged, the pair broken."""
        self.malformed += 1
        (log.warning if self.malformed == 1 else log.debug)(
            "cluster: malformed %s%s dropped (%d so far)", what,
            f" from {node}" if node else "", self.malformed)
        if node is not None:
            self._break(node, f"a malformed {what}")

    def _undelivered(self, dest: str, msg: Message) -> None:
        """A message for no live process here: one whose START is still on its way waits
        for it (a PID of ours above the last started); any other is a dead letter."""
        try:
            ours = instance_of(dest) == self.instance and serial_of(dest) > self._last_started
        except ValueError:  # not a PID at all
            ours = False
        if ours and self._early_count < MAX_EARLY:
            early = self._early.get(dest)
            if early is None:
                early = self._early[dest] = (time.monotonic() + self.timeout, [])
                self._arm()
            early[1].append(msg)
            self._early_count += 1
        else:
            self._dead(1)

    def started(self, pid: str) -> list[Message]:
        """A process of ours starts: the messages that arrived for it before (in order)."""
        self._last_started = max(self._last_started, serial_of(pid))
        if not self._early:
            return []
        early = self._early.pop(pid, None)
        if early is None:
            return []
        self._early_count -= len(early[1])
        return early[1]

    def gone(self, node: str, instance: int) -> None:
        """GONE: worker ``instance`` of ``node`` died. The router's later frames (its
        processes' EXITs) wait until the batches it published are in: it was killed with
        batches NATS may still route to us, or that wait unread in our socket while the
        router's pipe is read first. Settled by :meth:`_settle_gone`; without a connection,
        at once (a reconnect breaks every pair anyway)."""
        key = (node, instance)
        if key in self._gone_wait:
            return
        if self.nc is None or not self.connected:
            self.inbound.mark_gone(node, instance)
            if self._holding:
                self._check_hold()
            return
        self._gone_wait.add(key)
        if not self._holding:
            self._hold(self.rt._handlers)
        self._spawn(self._settle_gone(node, instance, time.monotonic() + self.timeout))

    async def _settle_gone(self, node: str, instance: int, deadline: float) -> None:
        """Wait until NATS has closed the dead worker's connection (a request on its subject
        finds no responders: the server has read and routed all it published), then for a
        round trip of our own (:meth:`_round_trip`); then its later batches are dropped and
        the held frames run. Not settled by ``deadline`` (node_timeout; one probe is always
        made, so a stop of our own loop is not taken for NATS's silence): a batch may be
        lost, the pair breaks (:meth:`_give_up`)."""
        import nats.errors

        settled, wait, tried = False, PROBE_FIRST, False
        try:
            while self.connected and not settled:
                left = deadline - time.monotonic()
                if left <= 0 and tried:
                    break
                tried = True
                try:
                    await self.nc.request(subject(self.config.name, node, instance), b"",
                                          timeout=min(wait, max(left, PROBE_FIRST)))
                except nats.errors.NoRespondersError:
                    settled = True
                except (nats.errors.TimeoutError, TimeoutError):
                    wait = min(wait * 2, PROBE_MAX)  # its subscription is still there
            if settled:
                settled = await self._round_trip(max(deadline - time.monotonic(), self.timeout))
        except Exception:  # the connection's trouble: not settled
            settled = False
        self._gone_wait.discard((node, instance))
        self.inbound.mark_gone(node, instance)
        if not settled and self.connected:
            self._give_up(node, f"worker {instance} died and NATS did not confirm its end "
                                "within node_timeout")
        if self._holding:
            self._check_hold()

    async def _round_trip(self, timeout: float) -> bool:
        """Publish a marker to our own subject and wait (``timeout``) until it comes back on
        our subscription: then every batch NATS routed to us before it has been handled."""
        self._marker_seq += 1
        token = MARKER + self._marker_id + self._marker_seq.to_bytes(8, "big")
        marker = self._markers[token] = self.rt.loop.create_future()
        try:
            await self.nc.publish(self.subject, token)
            await asyncio.wait_for(marker, timeout)
        except Exception:  # the timeout, or the connection's trouble
            return False
        finally:
            self._markers.pop(token, None)
        return True

    def _give_up(self, node: str, why: str) -> None:
        """Batches from ``node`` may be lost: break the pair, and an end of one of its
        processes held behind (EXIT, LINK_DOWN, an exec's result) is handed on as the
        break's ``node down: <node>``, as the router does for the edges it still has: what
        that process sent before its end may be lost, so the end must not look like one
        that came after all of it."""
        self._break(node, why)
        prefix = "{" + node + "@"
        down = wire.exit_error(f"node down: {node}")
        for frame in self._waiting:
            if (frame[0] == wire.EVENT and frame[2] in _ENDS and type(frame[3]) is str
                    and frame[3].startswith(prefix)):
                frame[4] = down

    def on_fence(self, frame: list[Any], handlers: dict[int, Callable[[list[Any]], None]]
                 ) -> None:
        """FENCE ``[FENCE, node, instance, session, batches]``: unless it is met, every
        router frame after it waits (``handlers``: the runtime's, swapped back on release)."""
        _, node, instance, session, count = frame
        if self.inbound.fence_met(node, instance, session, count):
            return
        self._fence = (node, instance, session, count, time.monotonic() + self.timeout)
        if not self._holding:
            self._hold(handlers)

    def _hold(self, handlers: dict[int, Callable[[list[Any]], None]]) -> None:
        """From now on the router's frames wait in order, but PEERS and GONE (they can settle
        what is waited for); ``handlers`` are the runtime's, swapped back by :meth:`_release`."""
        self._holding = True
        self._handlers = handlers
        hold = self._waiting.append
        waiting: dict[int, Callable[[list[Any]], None]] = {op: hold for op in handlers}
        waiting[wire.PEERS] = handlers[wire.PEERS]
        waiting[wire.GONE] = handlers[wire.GONE]
        self.rt._handlers = waiting
        self._arm()

    def _check_hold(self, now: float | None = None) -> None:
        """Release the held frames once the fence is met (or given up) and no dead worker's
        batches are awaited. A fence past its deadline is checked once more after a round
        trip of our own (:meth:`_verify_fence`): its batches may be in our socket, unread
        while our loop was stopped."""
        fence = self._fence
        if fence is not None:
            node, instance, session, count, deadline = fence
            if not self.inbound.fence_met(node, instance, session, count):
                if (now or time.monotonic()) < deadline or self._verifying:
                    return
                if self.connected:
                    self._verifying = True
                    self._spawn(self._verify_fence(fence))
                    return
                self._give_up(node, f"fence: {count} batches of worker {instance} expected, "
                                    "not all arrived")
            self._fence = None
        if not self._gone_wait:
            self._release()

    async def _verify_fence(self, fence: tuple[str, int, int, int, float]) -> None:
        """``fence``'s deadline passed: what NATS routed to us before a marker of ours is
        in once the marker is back; the fence still not met then is a lost batch."""
        await self._round_trip(self.timeout)
        self._verifying = False
        if self._fence is not fence:
            return  # met meanwhile (and released)
        node, instance, session, count, _ = fence
        if not self.inbound.fence_met(node, instance, session, count):
            self._give_up(node, f"fence: {count} batches of worker {instance} expected, "
                                "not all arrived")
        self._fence = None
        if not self._gone_wait:
            self._release()

    def _release(self) -> None:
        """Nothing is awaited: the waiting frames run in order; one of them may be another
        fence, which holds the rest again."""
        self._holding = False
        self.rt._handlers = self._handlers
        waiting, self._waiting = self._waiting, []
        for i, frame in enumerate(waiting):
            self.rt.on_frame(frame)
            if self._holding:
                self._waiting[:0] = waiting[i + 1:]
                return

    def _arm(self) -> None:
        """A timer while anything waits (held batches, a fence, early messages)."""
        if self._timer is None:
            self._timer = self.rt.loop.call_later(min(0.25, self.timeout / 4), self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            _, b = self._held.popleft()
            self._count(b.node, 3, 1)
            self._expired += 1
            (log.warning if self._expired == 1 else log.debug)(
                "cluster: a batch from %s worker %d never matched a pair its router knows "
                "(incarnation %#x, session %d): %d runs dropped", b.node, b.instance,
                b.incarnation, b.session, len(b.frames))
        if self._fence is not None:
            self._check_hold(now)
        if self._early:
            # a START comes well within node_timeout of a message its process was sent (the
            # sender learnt the PID after the START left): later, the PID was never ours
            for pid in [pid for pid, (deadline, _) in self._early.items() if deadline <= now]:
                n = len(self._early.pop(pid)[1])
                self._early_count -= n
                self._dead(n)
        if self._held or self._fence is not None or self._early:
            self._arm()
