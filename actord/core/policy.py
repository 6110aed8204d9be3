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

Cost: conditions on the actor are settled when the evaluator is built; action globs and
conditions once per action; resource globs and conditions once per (action, resource), or never
when no policy left for that action looks at the resource; only conditions on call metadata run
on every check. The memos are bounded (emptied when full), and a race between threads can only
recompute one. Pure: no I/O, no clock, no asyncio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, cast

from actord.core.config import Actor, Condition, Policy, SecurityConfig

__all__ = ["ADMIN", "ADMIN_ID", "Evaluator", "PolicySet"]

ADMIN_ID: Final = "system:admin"
ADMIN: Final[dict[str, Any]] = {"id": ADMIN_ID, "meta": {}}  # do not mutate; copy it
# Memo bounds: resources are target PIDs (unbounded over a node's life), actors come from
# with_actor; on overflow a cache is simply emptied - a miss costs microseconds, not a bug.
_MAX_DECISIONS = 4096  # per action
_MAX_PLANS = 256
_MAX_EVALUATORS = 1024

_Test = Callable[[Any], bool]  # one condition, given the value of its field's root
_Tests = tuple[_Test, ...]


_MISSING: Final = object()  # the value of a field that is not there
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

    __slots__ = ("_plans", "_reason", "_rules", "fixed")

    def __init__(self, rules: tuple[_Compiled, ...], fixed: bool | None, reason: str) -> None:
        self._rules = rules  # the scope's policies whose actor conditions hold, in order
        self.fixed = fixed  # the answer to everything (admin, no actor or scope), or None
        self._reason = reason  # explain() for a fixed answer
        self._plans: dict[str, _Plan] = {}  # per action: a handful of permissions in practice

    def check(self, action: str, resource: str, meta: Mapping[str, Any] | None = None) -> bool:
        """True when the caller may do ``action`` on ``resource``; ``meta`` is call metadata."""
        if self.fixed is not None:
            return self.fixed
        plan = self._plans.get(action)
        if plan is None:
            plan = self._plan(action)
        decision = plan.always
        if decision is None:
            decision = plan.decisions.get(resource)
            if decision is None:
                decision = plan.decide(resource)
        if isinstance(decision, bool):
            return decision
        return decision(_EMPTY if meta is None else meta)

    def may_allow(self, action: str) -> bool:
        """False when no resource at all could be allowed ``action`` (no allow policy for it)."""
        if self.fixed is not None:
            return self.fixed
        plan = self._plans.get(action) or self._plan(action)
        return any(not p.deny for p in plan.rules)

    def explain(self, action: str, resource: str, meta: Mapping[str, Any] | None = None) -> str:
        """Why ``check`` answers as it does, for messages: the deciding policy, or its absence.

        Starts with ``allowed`` exactly when ``check`` is True.
        """
        if self.fixed is not None:
            return self._reason
        m = _EMPTY if meta is None else meta
        plan = self._plans.get(action) or self._plan(action)
        matched = [p for p in plan.matching(resource) if all(t(m) for t in p.on_meta)]
        for p in matched:
            if p.deny:
                return f'denied by policy "{p.name}"'
        if matched:  # no deny among them, so the first is an allow
            return f'allowed by policy "{matched[0].name}"'
        return f"no policy allows {action} on {resource}"

    def _plan(self, action: str) -> _Plan:
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        rules = (p for p in self._rules if p.action(action) and all(t(action) for t in p.on_action))
        plan = self._plans[action] = _Plan(tuple(rules))
        return plan


# -- internals: compiling --------------------------------------------------------------------------


class _Compiled:
    """One policy: its globs as predicates, its conditions grouped by when they can be settled."""

    __slots__ = (
        "action",
        "deny",
        "name",
        "on_action",
        "on_actor",
        "on_meta",
        "on_resource",
        "resource",
    )

    def __init__(self, policy: Policy) -> None:
        self.name = policy.name
        self.deny = policy.effect == "deny"
        self.action = _glob(policy.actions)
        self.resource = _glob(policy.resources)
        # Each test is given the value of its field's root: the actor {"id", "meta"}, the action,
        # the resource or the call metadata. An unknown root is always missing, so it is settled
        # with the actor, as soon as possible.
        stages: dict[str, list[_Test]] = {"actor": [], "action": [], "resource": [], "meta": []}
        for c in policy.conditions:
            root, test = _condition(c)
            if root in stages:
                stages[root].append(test)
            else:
                stages["actor"].append(_on_missing(test))
        self.on_actor = tuple(stages["actor"])
        self.on_action = tuple(stages["action"])
        self.on_resource = tuple(stages["resource"])
        self.on_meta = tuple(stages["meta"])


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
            return y is not _MISSING and search(y if y.__class__ is str else str(y)) is not None

        return root, matches
    raise ValueError(f"unknown condition op {c.op!r}")  # config.parse admits none


def _negate(test: _Test) -> _Test:
    return lambda x: not test(x)


def _on_missing(test: _Test) -> _Test:
    """``test`` of a field that is never there, whatever it is given."""
    return lambda _: test(_MISSING)


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
_BOOL, _LIST, _DICT, _OPAQUE = object(), object(), object(), object()


def _freeze(value: Any) -> Any:
    """A hashable stand-in with the equality conditions use: a bool never equals a number.

    Lists and tuples are the same (msgpack turns tuples into lists); mappings compare by items;
    an unhashable non-msgpack value (a set, a bytearray) equals nothing rather than raising.
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
    if isinstance(value, Hashable):
        return value
    return (_OPAQUE, object())  # not a msgpack value: equal to nothing, never a cache hit


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


class _Plan:
    """One action's candidate rules, and its decisions: one for all, or one per resource."""

    __slots__ = ("always", "decisions", "rules")

    def __init__(self, rules: tuple[_Compiled, ...]) -> None:
        self.rules = rules  # the rules whose action globs and action conditions hold
        self.decisions: dict[str, bool | _Residual] = {}
        by_resource = any(p.resource is not _anything or p.on_resource for p in rules)
        self.always = None if by_resource else _collapse(rules)

    def matching(self, resource: str) -> list[_Compiled]:
        """The rules that match ``resource`` too; only their meta conditions are left to check."""
        return [
            p
            for p in self.rules
            if p.resource(resource)
            and (not p.on_resource or all(t(resource) for t in p.on_resource))
        ]

    def decide(self, resource: str) -> bool | _Residual:
        if len(self.decisions) >= _MAX_DECISIONS:
            self.decisions.clear()
        decision = self.decisions[resource] = _collapse(self.matching(resource))
        return decision


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


def _collapse(matched: Iterable[_Compiled]) -> bool | _Residual:
    """The decision for these candidates: a bool when call metadata cannot change it."""
    denies: list[_Tests] = []
    allows: list[_Tests] = []
    allowed = False
    for p in matched:  # a plain loop: this runs on every new (action, resource)
        if p.deny:
            if not p.on_meta:
                return False  # a deny that needs nothing more
            denies.append(p.on_meta)
        elif p.on_meta:
            allows.append(p.on_meta)
        else:
            allowed = True
    if not allowed and not allows:
        return False
    if allowed and not denies:
        return True
    return _Residual(tuple(denies), allowed, tuple(allows))
