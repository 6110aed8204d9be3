"""The supervisor's boundary: child specs, its options' checks, defaults and words.

Responsibility: turn what a caller passes to :func:`actord.supervisor.run` (``ChildSpec``
values or dicts, a backoff dict) into checked values, once, so the running supervisor
(:mod:`actord.supervisor_loop`) trusts them; and name, once, the defaults (OTP's) and the
words its peers see (the ``which_children`` topic, the CANCEL reasons).

Invariant: a ``ChildSpec`` that exists is valid (``__post_init__`` refuses a bad field with
``InvalidError``), and its ``shutdown_seconds`` is the cancel deadline derived from
``shutdown`` (None for ``brutal_kill``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from actord import ids
from actord.core.config import Backoff, Restart
from actord.durations import parse_duration
from actord.errors import InvalidError

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]

STRATEGIES: Final[tuple[str, ...]] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: Final[tuple[str, ...]] = ("permanent", "transient", "temporary")
BRUTAL_KILL: Final = "brutal_kill"
#: the query topic, and the topic of its answer
WHICH_CHILDREN: Final = "which_children"
#: CANCEL reasons the children see
REASON_RESTART: Final = "supervisor restart"
REASON_SHUTDOWN: Final = "supervisor shutdown"

# Defaults live here, once (OTP's: permanent children, 5 s shutdown).
DEFAULT_RESTART: Final[Restart] = "permanent"
DEFAULT_SHUTDOWN: Final = "5s"
DEFAULT_INTENSITY: Final = 3
DEFAULT_PERIOD: Final = "5s"


class SupervisorError(Exception):
    """The supervisor gave up: a child failed to start, or the restart intensity was hit."""


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor; checked when built (a bad value raises ``InvalidError``)."""

    id: str
    process: str
    host: str
    args: tuple[Any, ...] = ()
    restart: Restart = DEFAULT_RESTART
    shutdown: str | int = DEFAULT_SHUTDOWN
    name: str | None = None
    #: the cancel deadline in seconds, None for brutal_kill (derived from ``shutdown``)
    shutdown_seconds: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidError(f"child spec: bad id {self.id!r}: must be a non-empty string")
        where = f"child {self.id!r}"
        if not ids.is_id(self.process):
            raise InvalidError(f"{where}: bad process id {self.process!r}")
        if not isinstance(self.host, str) or not self.host:
            raise InvalidError(f"{where}: bad host {self.host!r}")
        if not isinstance(self.args, list | tuple):
            raise InvalidError(f"{where}: args must be a list")
        object.__setattr__(self, "args", tuple(self.args))
        if self.restart not in RESTARTS:
            raise InvalidError(f"{where}: bad restart {self.restart!r}: one of {RESTARTS}")
        if self.name is not None and not ids.is_name(self.name):
            raise InvalidError(f"{where}: bad name {self.name!r}")
        seconds: float | None = None
        if self.shutdown != BRUTAL_KILL:
            try:
                seconds = parse_duration(self.shutdown)
            except ValueError as e:
                raise InvalidError(f"{where}: shutdown: {e} or {BRUTAL_KILL!r}") from None
        object.__setattr__(self, "shutdown_seconds", seconds)


def child_spec(value: ChildSpec | dict[str, Any]) -> ChildSpec:
    """A ChildSpec from a spec or a dict of its fields (unknown or missing keys: INVALID)."""
    if isinstance(value, ChildSpec):
        return value
    if not isinstance(value, dict):
        raise InvalidError(f"bad child spec {value!r}: a ChildSpec or a dict")
    unknown = set(value) - _SPEC_KEYS
    if unknown:
        raise InvalidError(f"child spec {value.get('id')!r}: unknown keys {sorted(unknown)}")
    missing = {"id", "process", "host"} - set(value)
    if missing:
        raise InvalidError(f"child spec {value.get('id')!r}: missing keys {sorted(missing)}")
    return ChildSpec(**value)


_SPEC_KEYS = frozenset({"id", "process", "host", "args", "restart", "shutdown", "name"})


def check_children(children: object) -> list[ChildSpec]:
    """The children of ``run``, each a valid ChildSpec, ids and names unique; else INVALID."""
    if not isinstance(children, list | tuple):
        raise InvalidError("children must be a list of child specs")
    specs = [child_spec(c) for c in children]
    for what, values in (("id", [s.id for s in specs]),
                         ("name", [s.name for s in specs if s.name is not None])):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise InvalidError(f"children: duplicate {what} {dupes}")
    return specs


def check_backoff(backoff: object) -> Backoff | None:
    """``run``'s ``backoff`` dict as a ``Backoff`` (None: none); else INVALID."""
    if backoff is None:
        return None
    if not isinstance(backoff, dict) or set(backoff) - {"initial", "max", "factor", "jitter"}:
        raise InvalidError(f"bad backoff {backoff!r}: a dict of initial, max, factor, jitter")
    values: dict[str, float] = {}
    try:
        for key in ("initial", "max"):
            if key in backoff:
                values[key] = parse_duration(backoff[key])
    except ValueError as e:
        raise InvalidError(f"backoff: {e}") from None
    for key, low, high in (("factor", 1.0, float("inf")), ("jitter", 0.0, 1.0)):
        if key in backoff:
            v = backoff[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                raise InvalidError(f"bad backoff {key} {v!r}: a number in [{low}, {high}]")
            values[key] = float(v)
    return Backoff(**values)


__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_INTENSITY",
    "DEFAULT_PERIOD",
    "DEFAULT_RESTART",
    "DEFAULT_SHUTDOWN",
    "REASON_RESTART",
    "REASON_SHUTDOWN",
    "RESTARTS",
    "STRATEGIES",
    "WHICH_CHILDREN",
    "ChildSpec",
    "Strategy",
    "SupervisorError",
    "check_backoff",
    "check_children",
    "child_spec",
]
