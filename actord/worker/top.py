"""The busiest processes of one worker, for ``actord top`` (SPEC 12), picked in the worker.

A node may run 100k processes: each worker sends the router only its ``n`` busiest, by
mailbox depth or by message rate, and the router keeps the node's ``n`` busiest of those.
A process's rate is its messages (sent + received) since the previous top request this
worker answered, over the seconds since then; the counts of that request are kept, one int
per live process, and replaced by each answer (so several top clients share one baseline:
each sees the rate over the interval since the last request of any of them, still a true
rate). The first answer has no rates (None).

Invariant: an answer holds at most ``n`` rows; building it is O(live processes), and it
runs only when a top client asks (about once a second), never on the message path.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from typing import Any

from actord.worker.proc import Proc

#: the sort keys a worker knows (``memory`` is the router's: workers by RSS)
SORTS = ("mailbox", "rate")


def _count(p: Proc, key: str) -> int:
    """A per-process message counter (0 where the process keeps none)."""
    return int(getattr(p, key, 0))


class TopCounts:
    """Each process's message count at the previous top answer, and when that was."""

    __slots__ = ("at", "counts")

    def __init__(self) -> None:
        self.at: float | None = None  # the previous answer's time (the worker's monotonic)
        self.counts: dict[str, int] = {}

    def busiest(self, procs: Collection[Proc], n: int, sort: str,
                now: float) -> list[dict[str, Any]]:
        """The ``n`` busiest of ``procs`` by ``sort``, each ``{"pid", "id", "mailbox",
        "sent", "received", "rate"}`` (rate: messages a second, None in the first answer);
        ``now`` is the worker's monotonic clock. Records the counts for the next answer."""
        before, at = self.counts, self.at
        self.counts = counts = {p.pid: _count(p, "sent") + _count(p, "received")
                                for p in procs}
        self.at = now
        dt = None if at is None or now <= at else now - at

        def rate(p: Proc) -> float:
            return 0.0 if dt is None else (counts[p.pid] - before.get(p.pid, 0)) / dt

        key: Callable[[Proc], float] = rate if sort == "rate" else Proc.mailbox_depth
        return [
            {"pid": p.pid, "id": p.id, "mailbox": p.mailbox_depth(),
             "sent": _count(p, "sent"), "received": _count(p, "received"),
             "rate": None if dt is None else round(rate(p), 3)}
            for p in heapq.nlargest(n, procs, key=key)
        ]
