"""Peer: Thespian actors (multiprocQueueBase) on actord's (a) ping-pong and (b) stream.

One ``ActorSystem("multiprocQueueBase")`` per run (every actor is an OS process of its own;
Thespian's log file goes to the run's private temp dir), two actors. The driver ``ask``s
actor A to run a workload against actor B; A times it in its own process and answers:

    pingpong  A sends B an int and waits for B's reply before sending the next, ``rounds``
              times. The result is total time / rounds, in microseconds.
    stream    A sends B ``n`` messages ("m") in a row, then "end"; B counts them and answers
              "end" with its count. The result is messages per second, from A's first send
              to B's answer.

Run: python scripts/peers/thespian_peer.py [--rounds 1000] [--stream 5000] [--repeat 3] [--json]
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from typing import Any

import peer_common
from peer_common import DEFAULT, PeerSizes
from thespian.actors import Actor, ActorAddress, ActorSystem

BASE = "multiprocQueueBase"
ASK_TIMEOUT = 120.0  # seconds for one sample


class Ponger(Actor):  # type: ignore[misc]
    """Actor B: echoes ints from a ping-pong; counts a stream's ints until "end"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = 0

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, int):
            self.send(sender, msg)
        elif msg == "m":
            self.count += 1
        elif msg == "end":
            self.send(sender, ("end", self.count))
            self.count = 0


class Pinger(Actor):  # type: ignore[misc]
    """Actor A: runs a workload against B when asked; answers the asker with its number."""

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, tuple) and msg[0] == "pingpong":
            _, self.b, self.total = msg
            self.client, self.next = sender, 0
            self.start = time.perf_counter()
            self.send(self.b, 0)
        elif isinstance(msg, tuple) and msg[0] == "stream":
            _, b, self.total = msg
            self.client = sender
            self.start = time.perf_counter()
            for _ in range(self.total):
                self.send(b, "m")
            self.send(b, "end")
        elif isinstance(msg, tuple) and msg[0] == "end":
            elapsed = time.perf_counter() - self.start
            ok = msg[1] == self.total
            self.send(self.client, self.total / elapsed if ok else f"B counted {msg[1]}")
        elif isinstance(msg, int):
            if msg != self.next:
                self.send(self.client, f"pong {msg} for ping {self.next}")
                return
            self.next += 1
            if self.next < self.total:
                self.send(self.b, self.next)
            else:
                elapsed = time.perf_counter() - self.start
                self.send(self.client, elapsed / self.total * 1e6)


def ask(asys: ActorSystem, a: ActorAddress, msg: tuple[Any, ...]) -> float:
    """Ask A to run one workload; its number (or an error)."""
    answer = asys.ask(a, msg, ASK_TIMEOUT)
    if not isinstance(answer, float):
        raise RuntimeError(f"{msg[0]}: {answer!r}" if answer is not None
                           else f"{msg[0]}: no answer in {ASK_TIMEOUT:.0f} s")
    return answer


def pingpong(asys: ActorSystem, a: ActorAddress, b: ActorAddress, rounds: int) -> float:
    """One sample: mean round trip in microseconds over ``rounds`` round trips."""
    return ask(asys, a, ("pingpong", b, rounds))


def stream(asys: ActorSystem, a: ActorAddress, b: ActorAddress, n: int) -> float:
    """One sample: messages per second of a stream of ``n`` messages."""
    return ask(asys, a, ("stream", b, n))


def run(sizes: PeerSizes = DEFAULT, repeat: int = 3,
        workloads: tuple[str, ...] = ("pingpong", "stream")) -> dict[str, Any]:
    """Start the actor system once, take ``repeat`` samples of each workload, shut it down."""
    samples: dict[str, list[float]] = {w: [] for w in workloads}
    with peer_common.private_run("thespian-") as private:
        os.environ["THESPLOG_FILE"] = str(private.tmp / "thespian.log")
        start = time.perf_counter()
        asys = ActorSystem(BASE)
        try:
            a, b = asys.createActor(Pinger), asys.createActor(Ponger)
            startup = time.perf_counter() - start
            if "pingpong" in workloads:
                pingpong(asys, a, b, sizes.warmup)
            if "stream" in workloads:
                stream(asys, a, b, sizes.stream_warmup)
            for _ in range(repeat):
                if "pingpong" in workloads:
                    samples["pingpong"].append(pingpong(asys, a, b, sizes.rounds))
                if "stream" in workloads:
                    samples["stream"].append(stream(asys, a, b, sizes.stream))
        finally:
            asys.shutdown()
    version = importlib.metadata.version("thespian")
    return peer_common.result(f"Thespian ({BASE})", version, sizes, repeat, startup, samples,
                              private)


if __name__ == "__main__":
    peer_common.main(__doc__, run)
