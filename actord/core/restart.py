"""Restart policy of supervised services (SPEC section 8): pure decisions, time passed in.

Four rules, each a small function of values, so they are table- and property-tested with a
manual clock. No clock reads, no asyncio: callers pass ``now`` (monotonic seconds) and a
``random.Random`` for the jitter.

- :func:`should_restart`: does this end restart the service? OTP's restart types: permanent
  always, transient only after an abnormal end, temporary never.
- :func:`backoff_delay`: how long to wait before the ``n``-th consecutive restart (``n`` from
  0): ``min(initial * factor**n, max)``, then scaled by ``1 + jitter * u`` with ``u`` uniform
  in [-1, 1]. So the jitter may take a capped delay above ``max`` by at most ``jitter * max``
  (it spreads restarts of many services that failed together), and a delay is never negative.
- :func:`next_streak`: when the count of consecutive restarts starts over. A run that lasted
  at least :func:`stable_after` ``= max(backoff.max, intensity.period)`` resets it to 0. Why
  that long: after ``intensity.period`` no earlier restart counts towards the intensity any
  more, and after ``backoff.max`` the run outlasted the longest wait we would impose, so the
  next failure is a fresh incident, not the same crash loop, and is retried quickly again.
- :func:`add_restart`: the intensity rule of OTP's ``supervisor.erl``. A restart at ``t`` counts
  while ``now - t < period``; if recording one more at ``now`` makes more than ``max_restarts``
  count, the service is given up (state ``failed``). ``max_restarts = 0`` means any restart
  gives up. Restart times passed in must not be later than ``now``.

And the crash-loop rule of a worker slot (README "Worker crash loop"), built from the two
above: :func:`worker_restart_delay` replaces a crashed worker at once while its crashes stay
within :data:`WORKER_INTENSITY`, then after a delay doubling up to :data:`WORKER_BACKOFF`'s max.

Invariant: every function is total over valid config values (``Backoff``/``Intensity`` as
``actord.core.config`` builds them) and any ``n >= 0``; none keeps state.
"""

from __future__ import annotations

import random

from actord.core.config import Backoff, Intensity, Restart


def should_restart(restart: Restart, abnormal: bool) -> bool:
    """True if a service of this restart type is restarted after an end of this kind."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return abnormal
    return False  # temporary


def backoff_delay(backoff: Backoff, n: int, rng: random.Random) -> float:
    """Seconds to wait before the ``n``-th consecutive restart (``n`` from 0), with jitter."""
    try:
        base = min(backoff.initial * backoff.factor**n, backoff.max)
    except OverflowError:  # factor**n beyond float range: the cap applies
        base = backoff.max
    return max(0.0, base * (1.0 + backoff.jitter * rng.uniform(-1.0, 1.0)))


def stable_after(backoff: Backoff, intensity: Intensity) -> float:
    """Seconds a run must last for the next restart to count as a first one again."""
    return max(backoff.max, intensity.period)


def next_streak(streak: int, ran_for: float, backoff: Backoff, intensity: Intensity) -> int:
    """The consecutive-restart count to use after a run of ``ran_for`` seconds ended."""
    return 0 if ran_for >= stable_after(backoff, intensity) else streak


def add_restart(
    restarts: tuple[float, ...], now: float, intensity: Intensity
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at ``now``: (the restarts still in the window, True if allowed).

    ``restarts`` are the times of earlier restarts (any order); the result keeps only those
    within the period and ``now``, so it stays small and can be passed in next time.
    """
    recent = (*(t for t in restarts if now - t < intensity.period), now)
    return recent, len(recent) <= intensity.max_restarts


#: crashes of one worker slot within ``period`` that are replaced at once
WORKER_INTENSITY = Intensity(max_restarts=3, period=30.0)
#: the delay after those: 0.2 s, doubling up to 5 s; no jitter (one slot, no herd to spread)
WORKER_BACKOFF = Backoff(initial=0.2, max=5.0, factor=2.0, jitter=0.0)


def worker_restart_delay(
    crashes: tuple[float, ...], now: float
) -> tuple[tuple[float, ...], float]:
    """Record a worker crash at ``now``: (the crashes still in the window, seconds to wait
    before its replacement starts; 0.0 means at once).

    ``crashes`` are the slot's earlier crash times as this function last returned them.
    """
    recent, at_once = add_restart(crashes, now, WORKER_INTENSITY)
    if at_once:
        return recent, 0.0
    beyond = len(recent) - WORKER_INTENSITY.max_restarts - 1  # 0 for the first delayed one
    return recent, backoff_delay(WORKER_BACKOFF, beyond, random.Random(0))  # no jitter: any rng


__all__ = [
    "WORKER_BACKOFF", "WORKER_INTENSITY", "add_restart", "backoff_delay", "next_streak",
    "should_restart", "stable_after", "worker_restart_delay",
]
