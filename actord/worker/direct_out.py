"""The sending job of a worker's direct link: a message for another node's process queued
for its worker, one batch per destination worker per loop tick, fences (the formats:
:mod:`actord.core.direct`).

Invariant: a message leaves on this worker's one connection, after every earlier one to the
same worker, stamped with the pair's session as this worker knows it; every batch is
numbered before the first await of a flush, so a FENCE made meanwhile counts it.
"""

from __future__ import annotations

from typing import Any

from actord import ids
from actord.core import wire
from actord.core.direct import encode_direct, instance_of, serial_of, subject
from actord.core.nodes import serial_base
from actord.worker.direct_state import DirectState, log

#: bytes of a batch besides its frames (header, msgpack framing), and per frame: a bound,
#: so a batch cut by these never exceeds NATS's max_payload
BATCH_OVERHEAD = 256
FRAME_OVERHEAD = 32


class DirectSend(DirectState):
    """Sending (a DirectLink job)."""

    def send(self, dest: str, from_: str, topic: str, payload: bytes) -> bool:
        """Queue a message for another node's process ``dest`` (canonical); False when
        ``dest`` is one of our node's (the router's path). Consecutive messages of one
        sender to one receiver with one topic share one run (core/direct.py)."""
        to = self._routes.get(dest, "")  # the subject of dest's worker (a str: its hash is
        if to == "":                       # cached, a tuple's is not); "": not seen yet
            to = self._route(dest)
        if to is None:
            return False
        runs = self._out.get(to)
        if runs is None:
            self._out[to] = [[dest, from_, topic, payload]]
            self._dirty.add(to)
            if not self._flushing and self.connected:
                self._flushing = True
                self._spawn(self._flush())
        else:
            run = runs[-1]
            if run[0] is dest and run[1] is from_ and run[2] is topic:
                run.append(payload)
            else:
                runs.append([dest, from_, topic, payload])
        return True

    def _route(self, dest: str) -> str | None:
        node = ids.node_of(dest)
        to = None
        if len(self._routes) >= 65536:
            self._routes.clear()
            self._serials.clear()
        if node is not None and node != self.node:
            instance = instance_of(dest)
            to = subject(self.config.name, node, instance)
            self._targets[to] = (node, instance)
            self._serials[dest] = serial_of(dest)
        self._routes[dest] = to
        return to

    def _number(self) -> None:
        """Everything queued, numbered and encoded now (one batch per destination worker,
        nearly always), in ``_ready`` for the flush to publish: so a FENCE counts exactly
        the batches that will leave (none for messages that turn out dead letters)."""
        out, self._out = self._out, {}
        ready = self._ready
        for to, runs in out.items():
            node, instance = self._targets[to]
            peer = self.peers.get(node)
            if peer is None:  # the node is down: dead letters, as the router's
                self._dead(count_messages(runs))
                continue
            runs = self._this_run(runs, serial_base(peer[0]))
            if not runs:
                continue
            for data, n in self._batches(node, peer, instance, runs):
                ready.append((to, node, peer, data, n))

    async def _flush(self) -> None:
        """Publish what was queued, in order (numbered first: :meth:`_number`)."""
        try:
            while (self._out or self._ready) and self.connected:
                self._number()
                ready, self._ready = self._ready, []
                nc = self.nc
                for to, node, _, data, n in ready:
                    try:
                        if not self.connected:
                            raise ConnectionError("not connected to NATS")
                        await nc.publish(to, data)
                    except Exception as e:  # nats-py raises many kinds; the messages are lost
                        self._count(node, 4, n)
                        self._break(node, f"{n} messages lost: {e or type(e).__name__}")
                        continue
                    self._count(node, 0, n)
            if (self._out or self._ready) and not self.connected and self.nc is not None:
                self._drop_unsent()
        finally:
            self._flushing = False

    def _drop_unsent(self) -> None:
        """Cut off from NATS after the first connection: what is queued is lost, and each
        pair it was for breaks (nothing is buffered to arrive after the cut as if in order)."""
        out, self._out = self._out, {}
        ready, self._ready = self._ready, []
        lost = [(self._targets[to][0], count_messages(runs)) for to, runs in out.items()]
        lost += [(node, n) for _, node, _, _, n in ready]
        for node, n in lost:
            self._count(node, 4, n)
            self._break(node, f"{n} messages lost: not connected to NATS")

    def _this_run(self, runs: list[list[Any]], base: int) -> list[list[Any]]:
        """The runs for processes of the node's current run: a PID whose serial is below its
        run's serial base is of an earlier run (core/nodes.py), dead; its messages are dead
        letters here, never sent (its worker's subject may be a worker's of the new run,
        whose stream from us they would start)."""
        serials = self._serials  # each routed dest's serial, parsed once (a flush per tick)
        for run in runs:
            serial = serials.get(run[0])
            if (serial_of(run[0]) if serial is None else serial) < base:
                break
        else:
            return runs
        live = [run for run in runs if serial_of(run[0]) >= base]
        self._dead(count_messages(runs) - count_messages(live))
        return live

    def _batches(self, node: str, peer: tuple[int, int], instance: int,
                 runs: list[list[Any]]) -> list[tuple[bytes, int]]:
        """``runs`` as numbered batches that fit NATS's max_payload, each with its count of
        messages: one, nearly always (encoded whole first; only a batch over it is cut, by a
        bound of each message's size). A message that fits in none is a dead letter, logged."""
        inc, session = peer
        key = (node, inc, instance)
        seq = self._seq.get(key)
        if seq is None or seq[0] != session:
            seq = self._seq[key] = [session, 0]
        data = encode_direct(self.node, self.incarnation, inc, session, self.instance, seq[1],
                             runs)
        nc = self.nc
        limit = nc.max_payload if nc is not None else 1 << 20
        if len(data) <= limit:
            seq[1] += 1
            return [(data, count_messages(runs))]
        limit -= BATCH_OVERHEAD
        chunks: list[list[list[Any]]] = [[]]
        size = 0
        for dest, from_, topic, *payloads in runs:
            head = 4 * (len(dest) + len(from_) + len(topic)) + FRAME_OVERHEAD
            for payload in payloads:
                n = len(payload) + head
                if n > limit:
                    self._dead(1)
                    self.too_large += 1
                    log.warning("cluster: a %d-byte message to %s is over NATS's max_payload "
                                "(%d): dead letter", n, dest, limit + BATCH_OVERHEAD)
                    continue
                if size + n > limit and chunks[-1]:
                    chunks.append([])
                    size = 0
                chunks[-1].append([dest, from_, topic, payload])
                size += n
        out = []
        for chunk in chunks:
            if chunk:
                out.append((encode_direct(self.node, self.incarnation, inc, session,
                                          self.instance, seq[1], chunk), len(chunk)))
                seq[1] += 1
        return out

    def fence(self) -> None:
        """Before a frame to the router that may reach another node: FENCE, the batches
        numbered this session for each worker sent to since the last one (what is queued is
        numbered first)."""
        if self._out:
            self._number()
        if self._dead_letters:  # counted before the end or call that follows, not after
            self._tell_dead()
        fences: dict[str, list[Any]] = {}
        for to in self._dirty:
            node, instance = self._targets[to]
            peer = self.peers.get(node)
            if peer is None:
                continue
            inc, session = peer
            seq = self._seq.get((node, inc, instance))
            n = seq[1] if seq is not None and seq[0] == session else 0
            if n:
                fences.setdefault(node, [session, {}])[1][instance] = n
        self._dirty.clear()
        if fences:
            self.rt.conn.send([wire.FENCE, fences])


def count_messages(runs: list[list[Any]]) -> int:
    """The messages in ``runs``."""
    return sum(len(run) for run in runs) - 3 * len(runs)
