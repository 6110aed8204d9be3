"""Specification of actord.channel: FIFO delivery, close, select, and cancellation safety.

Every async test runs on uvloop and on the default asyncio loop (the ``run`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actord.channel import Channel, Closed, Empty, select
from actord.errors import InvalidError

Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run a coroutine to completion on a fresh loop of the parametrized kind."""
    return uvloop.run if request.param == "uvloop" else asyncio.run


async def settle(rounds: int = 5) -> None:
    """Let every ready callback and woken task run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- receive ---------------------------------------------------------------------------------


def test_fifo_order(run: Runner) -> None:
    """Items come out in the order they were put, through receive and receive_nowait alike."""

    async def main() -> None:
        ch = Channel("fifo")
        for i in range(100):
            assert ch._put(i)
        assert len(ch) == 100
        got = [await ch.receive() if i % 2 else ch.receive_nowait() for i in range(100)]
        assert got == list(range(100))
        assert len(ch) == 0

    run(main())


def test_receive_waits_then_wakes(run: Runner) -> None:
    """A receive on an empty channel suspends until an item is put, then returns it."""

    async def main() -> None:
        ch = Channel()
        task = asyncio.create_task(ch.receive())
        await settle()
        assert not task.done()
        assert ch._put("x")
        assert await task == "x"
        assert ch._waiters == []

    run(main())


def test_receive_nowait_on_empty_raises_empty() -> None:
    """receive_nowait on an open, empty channel raises Empty and takes nothing."""
    ch = Channel()
    with pytest.raises(Empty):
        ch.receive_nowait()
    ch._put(1)
    assert ch.receive_nowait() == 1
    with pytest.raises(Empty):
        ch.receive_nowait()


def test_two_receivers_get_distinct_items(run: Runner) -> None:
    """Concurrent receivers on one channel each get a different item; none is duplicated."""

    async def main() -> None:
        ch = Channel()
        tasks = [asyncio.create_task(ch.receive()) for _ in range(2)]
        await settle()
        ch._put("a")
        ch._put("b")
        assert sorted(await asyncio.gather(*tasks)) == ["a", "b"]
        assert len(ch) == 0

    run(main())


def test_many_receivers_share_items_exactly_once(run: Runner) -> None:
    """Many receivers waiting at once split a burst of items with no loss or duplication."""

    async def main() -> None:
        ch = Channel()
        tasks = [asyncio.create_task(ch.receive()) for _ in range(50)]
        await settle()
        for i in range(50):
            ch._put(i)
        assert sorted(await asyncio.gather(*tasks)) == list(range(50))

    run(main())


# -- close -----------------------------------------------------------------------------------


def test_close_keeps_queued_items_then_raises_closed(run: Runner) -> None:
    """After close, queued items are still received in order; then receive raises Closed."""

    async def main() -> None:
        ch = Channel()
        ch._put("a")
        ch._put("b")
        ch.close()
        assert ch.closed
        assert await ch.receive() == "a"
        assert ch.receive_nowait() == "b"
        with pytest.raises(Closed):
            await ch.receive()
        with pytest.raises(Closed):
            ch.receive_nowait()

    run(main())


def test_close_wakes_waiting_receiver_with_closed(run: Runner) -> None:
    """A receiver suspended on an empty channel gets Closed when the channel is closed."""

    async def main() -> None:
        ch = Channel()
        tasks = [asyncio.create_task(ch.receive()) for _ in range(3)]
        await settle()
        ch.close()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            assert isinstance(result, Closed)
        assert ch._waiters == []

    run(main())


def test_put_after_close_is_dropped() -> None:
    """_put on a closed channel returns False and queues nothing."""
    ch = Channel()
    assert ch._put(1)
    ch.close()
    assert not ch._put(2)
    assert len(ch) == 1
    assert ch.receive_nowait() == 1


def test_close_is_idempotent() -> None:
    """Closing twice is the same as closing once."""
    ch = Channel()
    ch._put(1)
    ch.close()
    ch.close()
    assert ch.closed
    assert ch.receive_nowait() == 1


def test_async_for_yields_until_closed_and_drained(run: Runner) -> None:
    """`async for` yields every item, waiting as needed, and stops once closed and drained."""

    async def main() -> None:
        ch = Channel()
        ch._put(0)

        async def produce() -> None:
            for i in range(1, 5):
                await asyncio.sleep(0)
                ch._put(i)
            ch.close()

        producer = asyncio.create_task(produce())
        assert [x async for x in ch] == [0, 1, 2, 3, 4]
        await producer

    run(main())


def test_drain_takes_everything_in_order() -> None:
    """_drain returns every queued item, oldest first, and leaves the channel empty."""
    ch = Channel()
    for i in range(5):
        ch._put(i)
    assert ch._drain() == [0, 1, 2, 3, 4]
    assert len(ch) == 0
    assert ch._drain() == []


def test_len_bool_and_repr() -> None:
    """len counts queued items, an empty channel is still truthy, repr names the channel."""
    ch = Channel("inbox")
    assert len(ch) == 0
    assert ch
    ch._put(None)
    assert len(ch) == 1
    assert "inbox" in repr(ch) and "queued=1" in repr(ch) and "open" in repr(ch)
    ch.close()
    assert "closed" in repr(ch)
    assert ch.name == "inbox"


# -- select ----------------------------------------------------------------------------------


def test_select_prefers_argument_order(run: Runner) -> None:
    """When several channels are ready, select takes from the first in argument order."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        a._put("a1")
        b._put("b1")
        assert await select(b, a) == (b, "b1")
        assert await select(b, a) == (a, "a1")

    run(main())


def test_select_wakes_on_later_put(run: Runner) -> None:
    """select waits when nothing is ready and returns the channel that gets an item first."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        task = asyncio.create_task(select(a, b))
        await settle()
        assert not task.done()
        b._put("x")
        assert await task == (b, "x")
        assert a._waiters == [] and b._waiters == []

    run(main())


def test_select_timeout_raises_and_unregisters(run: Runner) -> None:
    """select raises the builtin TimeoutError on timeout and leaves no waiter behind."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        with pytest.raises(TimeoutError):
            await select(a, b, timeout=0.01)
        assert a._waiters == [] and b._waiters == []
        a._put(1)  # a later item is still there for the next receiver
        assert a.receive_nowait() == 1

    run(main())


def test_select_timeout_zero_polls_once(run: Runner) -> None:
    """timeout=0 returns a ready item, or raises TimeoutError at once without waiting."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        with pytest.raises(TimeoutError):
            await select(a, b, timeout=0)
        assert a._waiters == [] and b._waiters == []
        b._put("x")
        assert await select(a, b, timeout=0) == (b, "x")

    run(main())


def test_select_skips_closed_and_drained_channels(run: Runner) -> None:
    """A closed, drained channel is skipped; a closed one with items is still ready."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        a._put("last")
        a.close()
        assert await select(a, b) == (a, "last")
        task = asyncio.create_task(select(a, b))
        await settle()
        assert not task.done()
        assert a._waiters == []  # never registers on a closed channel
        b._put("x")
        assert await task == (b, "x")

    run(main())


def test_select_on_all_closed_raises_closed(run: Runner) -> None:
    """select raises Closed when every channel is closed and drained, now or while waiting."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        a.close()
        task = asyncio.create_task(select(a, b))
        await settle()
        assert not task.done()
        b.close()
        with pytest.raises(Closed):
            await task
        with pytest.raises(Closed):
            await select(a, b, timeout=0)

    run(main())


@pytest.mark.parametrize(
    ("args", "timeout"),
    [
        ((), None),
        (("not a channel",), None),
        ((None,), None),
        ((Channel(),), "1s"),
        ((Channel(),), True),
        ((Channel(),), float("nan")),
    ],
    ids=["no-channels", "str-arg", "none-arg", "str-timeout", "bool-timeout", "nan-timeout"],
)
def test_select_rejects_bad_arguments(args: tuple[Any, ...], timeout: Any, run: Runner) -> None:
    """select raises InvalidError for no channels, a non-Channel argument or a bad timeout."""
    with pytest.raises(InvalidError):
        run(select(*args, timeout=timeout))


def test_select_passes_on_a_wakeup_it_did_not_use(run: Runner) -> None:
    """A select woken by b that takes from a (argument order) leaves b's item to b's receiver."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        sel = asyncio.create_task(select(a, b))
        await settle()
        recv = asyncio.create_task(b.receive())
        await settle()
        b._put("for-b")  # wakes the select, the first waiter on b
        a._put("for-a")  # the select prefers a when it runs
        assert await sel == (a, "for-a")
        assert await asyncio.wait_for(recv, 1) == "for-b"

    run(main())


def test_select_and_receive_on_one_channel_get_distinct_items(run: Runner) -> None:
    """A select and a receive waiting on the same channel never get the same item."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        sel = asyncio.create_task(select(a, b))
        recv = asyncio.create_task(b.receive())
        await settle()
        b._put(1)
        b._put(2)
        (ch, x), y = await asyncio.gather(sel, recv)
        assert ch is b and sorted([x, y]) == [1, 2]

    run(main())


# -- cancellation ----------------------------------------------------------------------------


def test_cancelled_receive_loses_nothing(run: Runner) -> None:
    """A cancelled waiting receive unregisters; an item put afterwards is still receivable."""

    async def main() -> None:
        ch = Channel()
        task = asyncio.create_task(ch.receive())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ch._waiters == []
        ch._put("kept")
        assert ch.receive_nowait() == "kept"

    run(main())


def test_receive_cancelled_after_wakeup_keeps_item_for_next_receiver(run: Runner) -> None:
    """A receive woken then cancelled before it runs leaves the item and wakes the next one."""

    async def main() -> None:
        ch = Channel()
        first = asyncio.create_task(ch.receive())
        await settle()
        second = asyncio.create_task(ch.receive())
        await settle()
        ch._put("x")  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it can take the item
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await asyncio.wait_for(second, 1) == "x"

    run(main())


def test_receive_under_timeout_loses_nothing(run: Runner) -> None:
    """A receive abandoned by asyncio.wait_for leaves later items in the channel."""

    async def main() -> None:
        ch = Channel()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ch.receive(), 0.01)
        assert ch._waiters == []
        ch._put(1)
        assert await ch.receive() == 1

    run(main())


def test_cancelled_select_loses_nothing(run: Runner) -> None:
    """A cancelled select unregisters from every channel; later items stay receivable."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        task = asyncio.create_task(select(a, b, timeout=10))
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert a._waiters == [] and b._waiters == []
        b._put("kept")
        assert b.receive_nowait() == "kept"

    run(main())


def test_select_cancelled_after_wakeup_keeps_item_for_next_receiver(run: Runner) -> None:
    """A select woken then cancelled before it runs leaves the item for another receiver."""

    async def main() -> None:
        a, b = Channel("a"), Channel("b")
        sel = asyncio.create_task(select(a, b))
        await settle()
        recv = asyncio.create_task(b.receive())
        await settle()
        b._put("x")
        sel.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sel
        assert await asyncio.wait_for(recv, 1) == "x"
        assert a._waiters == [] and b._waiters == []

    run(main())


# -- properties ------------------------------------------------------------------------------


class ChannelAgainstDeque(RuleBasedStateMachine):
    """The non-blocking API behaves like a deque that stops growing once closed."""

    def __init__(self) -> None:
        super().__init__()
        self.ch = Channel("model")
        self.model: deque[int] = deque()
        self.closed = False

    @rule(item=st.integers())
    def put(self, item: int) -> None:
        """_put appends unless closed, and says which."""
        assert self.ch._put(item) is not self.closed
        if not self.closed:
            self.model.append(item)

    @rule()
    def receive_nowait(self) -> None:
        """receive_nowait pops the oldest item, else raises Empty or Closed."""
        if self.model:
            assert self.ch.receive_nowait() == self.model.popleft()
        else:
            with pytest.raises(Closed if self.closed else Empty):
                self.ch.receive_nowait()

    @rule()
    def close(self) -> None:
        """close only stops further puts."""
        self.ch.close()
        self.closed = True

    @rule()
    def drain(self) -> None:
        """_drain takes everything, in order."""
        assert self.ch._drain() == list(self.model)
        self.model.clear()

    @invariant()
    def same_state(self) -> None:
        """Length and closed flag always match the model."""
        assert len(self.ch) == len(self.model)
        assert self.ch.closed is self.closed


TestChannelAgainstDeque = ChannelAgainstDeque.TestCase

# Bursts of operations run back to back with no task switch in between (so a waiter can be
# woken and cancelled before it runs); after each burst every task runs until it blocks.
_BURSTS = st.lists(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["put_a", "put_b", "receive_a", "receive_b", "select_ab", "select_ba", "nowait_a"]
            ),
            st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=7)),
        ),
        min_size=1,
        max_size=5,
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(bursts=_BURSTS)
def test_interleaved_receivers_never_lose_or_duplicate(bursts: list[list[Any]]) -> None:
    """Any mix of puts, receives, selects and cancellations delivers each item exactly once."""

    async def main() -> None:
        chans = {"a": Channel("a"), "b": Channel("b")}
        waits_on: dict[asyncio.Task[Any], tuple[Channel, ...]] = {}
        taken: list[tuple[str, int]] = []
        sent: list[tuple[str, int]] = []

        def pending() -> list[asyncio.Task[Any]]:
            return [t for t in waits_on if not t.done()]

        for burst in bursts:
            for op in burst:
                if isinstance(op, tuple):  # cancel one of the tasks still waiting
                    if live := pending():
                        live[op[1] % len(live)].cancel()
                    continue
                verb, names = op.split("_")
                targets = tuple(chans[n] for n in names)
                if verb == "put":
                    sent.append((names, len(sent)))
                    targets[0]._put(sent[-1])
                elif verb == "nowait":
                    with contextlib.suppress(Empty):
                        taken.append(targets[0].receive_nowait())  # type: ignore[arg-type]
                elif verb == "receive":
                    waits_on[asyncio.create_task(targets[0].receive())] = targets
                else:
                    waits_on[asyncio.create_task(select(*targets))] = targets
            await settle()
            # No lost wake-up: once every task has run, no task waits on a channel that has
            # items; and no finished wait has left its future registered.
            for task in pending():
                assert not any(len(ch) for ch in waits_on[task]), task
            for ch in chans.values():
                assert not any(fut.done() for fut in ch._waiters), ch._waiters
        for ch in chans.values():
            ch.close()
        await settle()
        assert not pending(), "a receiver hung after close"
        for task, targets in waits_on.items():
            if task.cancelled() or isinstance(task.exception(), Closed):
                continue
            result = task.result()
            if isinstance(result, tuple) and isinstance(result[0], Channel):
                assert result[0] in targets
                result = result[1]
            taken.append(result)
        for ch in chans.values():
            taken.extend(ch._drain())  # type: ignore[arg-type]
        assert sorted(taken, key=lambda item: item[1]) == sent

    uvloop.run(main())


def test_throughput_sanity(run: Runner) -> None:
    """A long run of put+receive pairs delivers every item in order (no timing asserted)."""

    async def main() -> None:
        ch = Channel()
        total = 0
        for i in range(200_000):
            ch._put(i)
            total += await ch.receive()  # type: ignore[operator]
        assert total == sum(range(200_000))
        assert len(ch) == 0

    run(main())
