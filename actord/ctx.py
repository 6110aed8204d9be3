"""Context values a process was spawned with (SPEC section 6): read-only."""

from __future__ import annotations

import copy
from typing import Any

from actord.errors import NotFoundError
from actord.kernel import require_process


def get(key: str) -> Any:
    """The value of ``key``; NOT_FOUND when the process has no such context value."""
    context = require_process()[1].context
    if key not in context:
        raise NotFoundError(f"no context value {key!r}")
    return copy.deepcopy(context[key])


def all() -> dict[str, Any]:
    """A copy of every context value."""
    return copy.deepcopy(require_process()[1].context)
