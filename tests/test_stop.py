"""core.stop: the stop sequence of services and supervisors, as a table."""

from __future__ import annotations

import pytest

from actord.core.stop import STOP_GRACE, TERMINATE_WAIT, StopStep, stop_bound, stop_steps


@pytest.mark.parametrize(("timeout", "steps"), [
    (10.0, (StopStep("cancel", 10.0 + STOP_GRACE), StopStep("terminate", TERMINATE_WAIT))),
    (0.0, (StopStep("cancel", STOP_GRACE), StopStep("terminate", TERMINATE_WAIT))),
    (None, (StopStep("terminate", TERMINATE_WAIT), StopStep("terminate", TERMINATE_WAIT))),
])
def test_stop_steps(timeout: float | None, steps: tuple[StopStep, StopStep]) -> None:
    """CANCEL with the deadline then terminate; brutal_kill (None) terminates at once."""
    assert stop_steps(timeout) == steps
    assert stop_bound(timeout) == sum(step.wait for step in steps)
