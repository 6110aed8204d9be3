"""Policy evaluation: may this actor, under this scope, do this action on this resource?

Responsibility: compile the ``[security]`` table (SPEC 7 and 8) once into a :class:`PolicySet`,
hand out one :class:`Evaluator` per (actor, scope), and answer ``check(action, resource, meta)``
with a bool, or ``explain(...)`` with the reason, for the send path and every other call.

Invariant: a decision depends only on the compiled config and the arguments, and equals the
direct reading of SPEC 7: the actor ``system:admin`` may do anything; a caller without an actor
or without a scope is allowed in permissive mode and denied in strict mode; otherwise the
policies of the caller's scopes (unknown scope names contribute none) that match - an action
glob matches the action, a resource glob matches the resource, and every condition holds - are
collected: any deny wins, else any allow passes, else denied. The caches below only memoise
that function, so ``check`` answers as an uncached evaluation would.

Globs: ``*`` matches any run of characters (dots included), ``?`` exactly one; everything else,
``[`` too, is literal, and case matters. Conditions: ``field`` is a dotted path into
``{"actor": {"id", "meta"}, "action", "resource", "meta": call metadata}`` (``meta.pid`` is the
caller's PID); a path that leaves the mappings, or an unknown root, is a missing field. ``eq``,
``in`` and ``matches`` (``re.search`` on ``str(field)``) are false on a missing field, ``ne``
and ``nin`` true; ``exists`` is true when presence equals its value. Equality is Python's,
except that a bool never equals a number (``true`` is not ``1``), as in msgpack and TOML.

Cost: conditions on the actor are settled when the evaluator is built; globs and conditions on
action and resource are settled once per (action, resource) and cached; only conditions on
call metadata run on every check. Pure: no I/O, no clock, no asyncio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, cast

from actord.core.config import Actor, Condition, Policy, SecurityConfig

__all__ = ["ADMIN", "ADMIN_ID", "Evaluator", "PolicySet"]

ADMIN_ID: Final = "system:admin"
ADMIN: Final[dict[str, Any]] = {"id": ADMIN_ID, "meta": {}}  # do not mutate; copy it
# Memo bounds: resources are target PIDs (unbounded over a node's life), actors come from
# with_actor; on overflow a cache is simply emptied - a miss costs microseconds, not a bug.
_MAX_DECISIONS = 4096
_MAX_EVALUATORS = 1024

_Test = Callable[[Any], bool]  # one condition, given the value of its field's root
_Tests = tuple[_Test, ...]
_CALL_ROOTS = ("action", "resource")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()
_EMPTY: Final[Mapping[str, Any]] = {}  # call metadata or actor meta when there is none


# -- API ------------------------------------------------------------------------------------------


class PolicySet:
    """Compiled from a SecurityConfig once (at start and on reload); hands out evaluators."""

    __slots__ = ("_evaluators", "_scopes", "mode")

    def __init__(self, mode: str, scopes: Mapping[str, tuple[_Compiled, ...]]) -> None:
        self.mode = mode
        self._scopes = dict(scopes)
        self._evaluators: dict[object, Evaluator] = {}

    @classmethod
    def compile(cls, security: SecurityConfig) -> PolicySet:
        """Compile every policy once; a scope becomes the tuple of its compiled policies."""
        compiled = {name: _Compiled(p) for name, p in security.policies.items()}
        scopes = {
            name: tuple(compiled[p] for p in scope.policies)
            for name, scope in security.scopes.items()
        }
        return cls(security.mode, scopes)

    def evaluator(
        self, actor: Mapping[str, Any] | Actor | None, scope: Sequence[str] | None
    ) -> Evaluator:
        """The evaluator of a caller, cached per (actor id, actor meta, scope).

        ``actor`` is ``{"id": str, "meta": dict}`` (``meta`` optional) or a config ``Actor``;
        ``None`` or an empty ``scope`` means "no scope". The caller validated both.
        """
        if isinstance(scope, str):  # a str is a Sequence[str]: refuse the classic mistake
            raise TypeError(f"scope must be a sequence of scope names, not {scope!r}")
        ident, meta = _actor_parts(actor)
        key = (ident, _freeze(meta), tuple(scope or ()))
        found = self._evaluators.get(key)
        if found is None:
            if len(self._evaluators) >= _MAX_EVALUATORS:
                self._evaluators.clear()
            found = self._evaluators[key] = self._build(ident, meta, scope or ())
        return found

    def _build(self, ident: str | None, meta: Mapping[str, Any], scope: Sequence[str]) -> Evaluator:
        if ident == ADMIN_ID:
            return Evaluator((), True, f'allowed: actor "{ADMIN_ID}" may do anything')
        if ident is None or not scope:
            ok = self.mode == "permissive"
            verdict = "allowed" if ok else "denied"
            return Evaluator((), ok, f"{verdict}: caller has no actor or scope ({self.mode} mode)")
        actor = {"id": ident, "meta": meta}
        seen: set[str] = set()
        rules: list[_Compiled] = []
        for name in scope:  # scope order, then policy order; a policy counts once
            for p in self._scopes.get(name, ()):
                if p.name not in seen:
                    seen.add(p.name)
                    if all(test(actor) for test in p.on_actor):
                        rules.append(p)
        return Evaluator(tuple(rules), None, "")


class Evaluator:
    """The decisions of one (actor, scope); ``check`` is the hot path, ``explain`` the why."""

    __slots__ = ("_decisions", "_fixed", "_reason", "_rules")

    def __init__(self, rules: tuple[_Compiled, ...], fixed: bool | None, reason: str) -> None:
        self._rules = rules  # the scope's policies whose actor conditions hold, in order
        self._fixed = fixed  # the answer to everything (admin, no actor or scope), or None
        self._reason = reason  # explain() for a fixed answer
        # (action, resource) -> the decision, or a _Residual still to ask call metadata
        self._decisions: dict[tuple[str, str], bool | _Residual] = {}

    def check(self, action: str, resource: str, meta: Mapping[str, Any] | None = None) -> bool:
        """True when the caller may do ``action`` on ``resource``; ``meta`` is call metadata."""
        if self._fixed is not None:
            return self._fixed
        decision = self._decisions.get((action, resource))
        if decision is None:
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            decision = self._decisions[action, resource] = _collapse(
                self._matching(action, resource)
            )
        if isinstance(decision, bool):
            return decision
        return decision(_EMPTY if meta is None else meta)

    def explain(self, action: str, resource: str, meta: Mapping[str, Any] | None = None) -> str:
        """Why ``check`` answers as it does, for messages: the deciding policy, or its absence.

        Starts with ``allowed`` exactly when ``check`` is True.
        """
        if self._fixed is not None:
            return self._reason
        m = _EMPTY if meta is None else meta
        matched = [p for p in self._matching(action, resource) if all(t(m) for t in p.on_meta)]
        for p in matched:
            if p.deny:
                return f'denied by policy "{p.name}"'
        if matched:  # no deny among them, so the first is an allow
            return f'allowed by policy "{matched[0].name}"'
        return f"no policy allows {action} on {resource}"

    def _matching(self, action: str, resource: str) -> list[_Compiled]:
        """The rules whose globs and action/resource conditions hold (meta is still to check)."""
        values = {"action": action, "resource": resource}
        return [
            p
            for p in self._rules
            if p.action(action)
            and p.resource(resource)
            and all(test(values[root]) for root, test in p.on_call)
        ]


# -- internals: compiling --------------------------------------------------------------------------


class _Compiled:
    """One policy: its globs as predicates, its conditions grouped by when they can be settled."""

    __slots__ = ("action", "deny", "name", "on_actor", "on_call", "on_meta", "resource")

    def __init__(self, policy: Policy) -> None:
        self.name = policy.name
        self.deny = policy.effect == "deny"
        self.action = _glob(policy.actions)
        self.resource = _glob(policy.resources)
        on_actor: list[_Test] = []  # given the actor {"id", "meta"}; unknown roots: missing
        on_call: list[tuple[str, _Test]] = []  # given the action or the resource
        on_meta: list[_Test] = []  # given the call metadata
        for c in policy.conditions:
            root, test = _condition(c)
            if root in _CALL_ROOTS:
                on_call.append((root, test))
            elif root == "meta":
                on_meta.append(test)
            elif root == "actor":
                on_actor.append(test)
            else:
                on_actor.append(lambda _, test=test: test(_MISSING))  # type: ignore[misc]
        self.on_actor = tuple(on_actor)
        self.on_call = tuple(on_call)
        self.on_meta = tuple(on_meta)


def _glob(patterns: Iterable[str]) -> Callable[[str], object]:
    """One predicate for a list of globs: match-all, a set lookup, or one anchored regex."""
    patterns = tuple(patterns)
    if "*" in patterns:
        return _anything
    if not any("*" in p or "?" in p for p in patterns):
        return frozenset(patterns).__contains__
    parts = (
        "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in p)
        for p in patterns
    )
    return re.compile("(?:" + "|".join(parts) + ")", re.DOTALL).fullmatch


def _anything(_: str) -> bool:
    return True


def _condition(c: Condition) -> tuple[str, _Test]:
    """``(root, test)``: the field's first segment, and a test given that root's value."""
    root, *rest = c.field.split(".")
    get = _path(tuple(rest))
    value = c.value
    if c.op in ("eq", "ne"):
        want = _freeze(value)

        def equal(x: Any) -> bool:
            y = get(x)
            return y is not _MISSING and _freeze(y) == want

        return root, equal if c.op == "eq" else _negate(equal)
    if c.op in ("in", "nin"):
        members = frozenset(_freeze(v) for v in cast("tuple[Any, ...]", value))

        def member(x: Any) -> bool:
            y = get(x)
            return y is not _MISSING and _freeze(y) in members

        return root, member if c.op == "in" else _negate(member)
    if c.op == "exists":
        present = bool(value)
        return root, lambda x: (get(x) is not _MISSING) is present
    if c.op == "matches":
        search = re.compile(str(value)).search

        def matches(x: Any) -> bool:
            y = get(x)
            return y is not _MISSING and search(y if y.__class__ is str else repr(y)) is not None

        return root, matches
    raise ValueError(f"unknown condition op {c.op!r}")  # config.parse admits none


def _negate(test: _Test) -> _Test:
    return lambda x: not test(x)


def _path(keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """Walk ``keys`` down nested mappings; ``_MISSING`` when a key or a mapping is absent."""
    if not keys:
        return lambda x: x
    if len(keys) == 1:  # meta.pid, actor.id: the common case, without a loop
        (key,) = keys
        return lambda x: (
            x.get(key, _MISSING) if x.__class__ is dict or isinstance(x, Mapping) else _MISSING
        )

    def walk(x: Any) -> Any:
        for key in keys:
            if not (x.__class__ is dict or isinstance(x, Mapping)):
                return _MISSING
            x = x.get(key, _MISSING)
        return x

    return walk


_ATOMS: Final = frozenset({str, int, float, bytes, type(None)})
_BOOL, _LIST, _DICT = object(), object(), object()


def _freeze(value: Any) -> Any:
    """A hashable stand-in with the equality conditions use: a bool never equals a number.

    Lists and tuples are the same (msgpack turns tuples into lists); mappings compare by items.
    """
    cls = value.__class__
    if cls in _ATOMS:
        return value
    if cls is bool:
        return (_BOOL, value)
    if isinstance(value, list | tuple):
        return (_LIST, tuple(_freeze(v) for v in value))
    if isinstance(value, Mapping):
        return (_DICT, frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    return value


def _actor_parts(actor: Mapping[str, Any] | Actor | None) -> tuple[str | None, Mapping[str, Any]]:
    if actor is None:
        return None, _EMPTY
    if isinstance(actor, Actor):
        return actor.id, actor.meta
    ident, meta = actor["id"], actor.get("meta")
    if not isinstance(ident, str):
        raise TypeError(f"actor id must be a str, got {ident!r}")
    return ident, _EMPTY if meta is None else meta


# -- internals: deciding ---------------------------------------------------------------------------


class _Residual:
    """What is left of a decision once only call-metadata conditions remain unsettled."""

    __slots__ = ("allowed", "allows", "denies")

    def __init__(
        self, denies: tuple[_Tests, ...], allowed: bool, allows: tuple[_Tests, ...]
    ) -> None:
        self.denies = denies  # per matching deny policy: its meta conditions (all must hold)
        self.allowed = allowed  # a matching allow policy has no meta conditions
        self.allows = allows  # per matching allow policy with meta conditions: those

    def __call__(self, meta: Mapping[str, Any]) -> bool:
        for tests in self.denies:
            if all(t(meta) for t in tests):
                return False
        if self.allowed:
            return True
        return any(all(t(meta) for t in tests) for tests in self.allows)


def _collapse(matched: list[_Compiled]) -> bool | _Residual:
    """The decision for these candidates: a bool when call metadata cannot change it."""
    denies = tuple(p.on_meta for p in matched if p.deny)
    if () in denies:  # a deny that needs nothing more
        return False
    allowed = any(not p.deny and not p.on_meta for p in matched)
    allows = tuple(p.on_meta for p in matched if not p.deny and p.on_meta)
    if not allowed and not allows:
        return False
    if allowed and not denies:
        return True
    return _Residual(denies, allowed, allows)
