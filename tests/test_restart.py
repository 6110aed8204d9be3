"""The restart policy (actord.core.restart): tables, a manual clock, and properties."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actord.core.config import Backoff, Intensity
from actord.core.restart import (
    add_restart,
    backoff_delay,
    next_streak,
    should_restart,
    stable_after,
    worker_restart_delay,
)


class ManualClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


NO_JITTER = Backoff(initial=0.1, max=30.0, factor=2.0, jitter=0.0)


@pytest.mark.parametrize(
    ("restart", "abnormal", "expected"),
    [
        ("permanent", False, True),
        ("permanent", True, True),
        ("transient", False, False),
        ("transient", True, True),
        ("temporary", False, False),
        ("temporary", True, False),
    ],
)
def test_should_restart(restart: str, abnormal: bool, expected: bool) -> None:
    """Permanent always restarts, transient only after an abnormal end, temporary never."""
    assert should_restart(restart, abnormal) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 0.1), (1, 0.2), (2, 0.4), (5, 3.2), (8, 25.6), (9, 30.0), (100, 30.0), (5000, 30.0)],
)
def test_backoff_delay_doubles_up_to_max(n: int, expected: float) -> None:
    """Without jitter the n-th delay is initial * factor**n, capped at max (no overflow)."""
    assert backoff_delay(NO_JITTER, n, random.Random(0)) == pytest.approx(expected)


def test_backoff_factor_one_is_constant() -> None:
    """factor 1 keeps every delay at initial."""
    b = Backoff(initial=0.5, max=30.0, factor=1.0, jitter=0.0)
    assert {backoff_delay(b, n, random.Random(0)) for n in range(50)} == {0.5}


def test_backoff_jitter_is_a_fraction_either_side() -> None:
    """Jitter 0.5 spreads delays over [base/2, 1.5*base], using both sides."""
    b = Backoff(initial=1.0, max=1.0, factor=2.0, jitter=0.5)
    rng = random.Random(42)
    delays = [backoff_delay(b, 3, rng) for _ in range(500)]
    assert all(0.5 <= d <= 1.5 for d in delays)
    assert min(delays) < 0.7 and max(delays) > 1.3


def test_backoff_jitter_is_reproducible_with_a_seeded_rng() -> None:
    """The injected Random is the only source of randomness."""
    b = Backoff(initial=0.1, max=30.0, factor=2.0, jitter=0.3)
    first = [backoff_delay(b, n, random.Random(7)) for n in range(10)]
    assert first == [backoff_delay(b, n, random.Random(7)) for n in range(10)]


@pytest.mark.parametrize(
    ("backoff_max", "period", "ran_for", "streak", "expected"),
    [
        (30.0, 10.0, 29.9, 4, 4),  # shorter than backoff.max: still the same crash loop
        (30.0, 10.0, 30.0, 4, 0),  # exactly the stable time: starts over
        (1.0, 10.0, 5.0, 3, 3),  # shorter than the intensity period
        (1.0, 10.0, 10.0, 3, 0),
        (1.0, 10.0, 0.0, 0, 0),
    ],
)
def test_next_streak_resets_after_a_stable_run(
    backoff_max: float, period: float, ran_for: float, streak: int, expected: int
) -> None:
    """A run of at least max(backoff.max, intensity.period) resets the backoff."""
    b = Backoff(initial=0.1, max=backoff_max, factor=2.0, jitter=0.0)
    i = Intensity(max_restarts=5, period=period)
    assert stable_after(b, i) == max(backoff_max, period)
    assert next_streak(streak, ran_for, b, i) == expected


@pytest.mark.parametrize(
    ("earlier", "now", "allowed", "kept"),
    [
        ((), 0.0, True, 1),
        ((0.0, 1.0, 2.0, 3.0), 4.0, True, 5),  # the 5th restart within 10s: allowed
        ((0.0, 1.0, 2.0, 3.0, 4.0), 5.0, False, 6),  # the 6th: given up
        ((0.0, 1.0, 2.0, 3.0, 4.0), 10.0, True, 5),  # 0.0 is exactly one period old: aged out
        ((0.0, 1.0, 2.0, 3.0, 4.0), 10.5, True, 5),
        ((0.0, 1.0, 2.0, 3.0, 4.0), 99.0, True, 1),
    ],
)
def test_add_restart_intensity_table(
    earlier: tuple[float, ...], now: float, allowed: bool, kept: int
) -> None:
    """max_restarts 5 in 10s: a 6th restart within the window gives up."""
    recent, ok = add_restart(earlier, now, Intensity(max_restarts=5, period=10.0))
    assert ok is allowed
    assert len(recent) == kept and recent[-1] == now


def test_add_restart_zero_means_never() -> None:
    """max_restarts 0: the first restart already gives up."""
    assert add_restart((), 0.0, Intensity(max_restarts=0, period=1.0))[1] is False


def _crash_loop(run_time: float, limit: int = 100) -> tuple[int, list[float]]:
    """Simulate a service that ends run_time after every start; (restarts, delays) until
    it is given up or ``limit`` restarts happened."""
    clock, backoff, intensity = ManualClock(), NO_JITTER, Intensity(5, 10.0)
    history: tuple[float, ...] = ()
    streak, restarts, delays = 0, 0, []
    while restarts < limit:
        clock.advance(run_time)  # the run, then the end
        streak = next_streak(streak, run_time, backoff, intensity)
        history, ok = add_restart(history, clock.now, intensity)
        if not ok:
            break
        delay = backoff_delay(backoff, streak, random.Random(0))
        delays.append(delay)
        streak += 1
        clock.advance(delay)
        restarts += 1
    return restarts, delays


def test_crash_loop_is_given_up_after_max_restarts() -> None:
    """A service that crashes at once is restarted 5 times, with doubling delays, then failed."""
    restarts, delays = _crash_loop(run_time=0.0)
    assert restarts == 5
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


def test_slow_crashes_are_restarted_forever_from_the_initial_delay() -> None:
    """A service that runs longer than the stable time between crashes is never given up."""
    restarts, delays = _crash_loop(run_time=30.0)
    assert restarts == 100
    assert set(delays) == {0.1}


def test_medium_crashes_grow_the_backoff_but_stay_under_intensity() -> None:
    """Crashes 3s apart keep the streak (backoff grows to max) but stay within intensity."""
    restarts, delays = _crash_loop(run_time=3.0, limit=20)
    assert restarts == 20
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8]) and delays[-1] == 30.0


# -- properties -----------------------------------------------------------------------------------

backoffs = st.builds(
    lambda initial, extra, factor, jitter: Backoff(initial, initial + extra, factor, jitter),
    st.floats(0.0, 100.0),
    st.floats(0.0, 1000.0),
    st.floats(1.0, 10.0),
    st.floats(0.0, 1.0),
)


@given(backoffs, st.integers(0, 10_000), st.integers(0, 2**32))
def test_backoff_delay_bounds(backoff: Backoff, n: int, seed: int) -> None:
    """Every delay is within jitter of the capped base, never negative, never above max*(1+j)."""
    base = backoff_delay(Backoff(backoff.initial, backoff.max, backoff.factor, 0.0), n,
                         random.Random(seed))
    delay = backoff_delay(backoff, n, random.Random(seed))
    assert backoff.initial <= base <= backoff.max
    assert base * (1 - backoff.jitter) - 1e-9 <= delay <= base * (1 + backoff.jitter) + 1e-9
    assert delay >= 0.0


@given(backoffs, st.integers(0, 10_000))
def test_backoff_base_never_shrinks(backoff: Backoff, n: int) -> None:
    """Without jitter, the delay never decreases from one consecutive restart to the next."""
    b = Backoff(backoff.initial, backoff.max, backoff.factor, 0.0)
    rng = random.Random(0)
    assert backoff_delay(b, n, rng) <= backoff_delay(b, n + 1, rng)


@given(
    st.lists(st.floats(0.0, 5.0), max_size=60),
    st.integers(0, 8),
    st.floats(0.01, 20.0),
)
def test_add_restart_matches_a_model(gaps: list[float], max_restarts: int, period: float) -> None:
    """Pruned history gives the same answers as counting every restart ever in the window."""
    intensity = Intensity(max_restarts, period)
    clock, history, everything = ManualClock(0.0), (), []
    for gap in gaps:
        now = clock.advance(gap)
        everything.append(now)
        history, ok = add_restart(history, now, intensity)
        in_window = [t for t in everything if now - t < period]
        assert len(history) == len(in_window)
        assert ok is (len(in_window) <= max_restarts)


@given(st.integers(1, 10), st.integers(1, 100_000), st.lists(st.integers(0, 50_000), max_size=30))
def test_restarts_a_period_apart_are_always_allowed(
    max_restarts: int, period: int, extra: list[int]
) -> None:
    """With max_restarts >= 1, restarts at least one period apart never give up."""
    # whole numbers keep the float arithmetic exact, so "a period apart" is exactly that
    intensity = Intensity(max_restarts, float(period))
    clock, history = ManualClock(0.0), ()
    for e in extra:
        history, ok = add_restart(history, clock.advance(float(period + e)), intensity)
        assert ok


@pytest.mark.parametrize(
    ("crashes", "now", "kept", "delay"),
    [
        ((), 100.0, (100.0,), 0.0),  # a first crash: replaced at once
        ((90.0, 95.0), 100.0, (90.0, 95.0, 100.0), 0.0),  # the third in 30 s: still at once
        ((80.0, 90.0, 95.0), 100.0, (80.0, 90.0, 95.0, 100.0), 0.2),  # the fourth: 0.2 s
        ((70.5, 80.0, 90.0, 95.0), 100.0, (70.5, 80.0, 90.0, 95.0, 100.0), 0.4),  # doubles
        ((70.0, 80.0, 90.0, 95.0), 100.0, (80.0, 90.0, 95.0, 100.0), 0.2),  # 30 s ago: out
        ((10.0, 20.0, 30.0), 100.0, (100.0,), 0.0),  # a quiet window: at once again
        (tuple(99.0 + i / 10 for i in range(7)), 100.0,
         (*(99.0 + i / 10 for i in range(7)), 100.0), 3.2),  # the eighth: 0.2 * 2**4
        (tuple(99.0 + i / 10 for i in range(8)), 100.0,
         (*(99.0 + i / 10 for i in range(8)), 100.0), 5.0),  # 6.4 capped at 5 s
        (tuple(99.0 + i / 1000 for i in range(500)), 100.0,
         (*(99.0 + i / 1000 for i in range(500)), 100.0), 5.0),  # no overflow
    ],
)
def test_worker_restart_delay(
    crashes: tuple[float, ...], now: float, kept: tuple[float, ...], delay: float
) -> None:
    """A worker slot restarts at once up to 3 times in 30 s, then after a delay doubling
    from 0.2 s up to 5 s (README "Worker crash loop")."""
    assert worker_restart_delay(crashes, now) == (kept, pytest.approx(delay))
