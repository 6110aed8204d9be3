"""Specification of actord.core.policy: SPEC 7 evaluation, deny over allow over default deny."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actord.core.config import Actor, SecurityConfig, parse
from actord.core.policy import ADMIN, PolicySet

# -- building configs through the real TOML path ------------------------------------------------

Cond = dict[str, Any]
Pol = dict[str, Any]


def C(field: str, op: str, value: Any = None) -> Cond:
    """A condition; ``value`` None leaves the key out (TOML has no null)."""
    return {"field": field, "op": op, **({} if value is None else {"value": value})}


def P(effect: str, actions: Sequence[str], resources: Sequence[str], *conds: Cond) -> Pol:
    """A policy of ``effect`` on these action and resource globs when all ``conds`` hold."""
    return {
        "effect": effect,
        "actions": list(actions),
        "resources": list(resources),
        "conds": conds,
    }


def allow(*conds: Cond) -> Pol:
    """Allow everything, when ``conds`` hold."""
    return P("allow", ["*"], ["*"], *conds)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # str, int, float, bool: JSON spells them as TOML does


def security(scopes: Mapping[str, Sequence[Pol]], mode: str = "permissive") -> SecurityConfig:
    """Parse a [security] table; the policies of scope ``s`` are named ``s0``, ``s1``, ..."""
    lines = ["[security]", f"mode = {_toml(mode)}"]
    for scope, pols in scopes.items():
        for i, p in enumerate(pols):
            lines += [
                f"[security.policies.{scope}{i}]",
                f"actions = {_toml(p['actions'])}",
                f"resources = {_toml(p['resources'])}",
                f"effect = {_toml(p['effect'])}",
                f"conditions = {_toml(list(p['conds']))}",
            ]
        lines += [
            f"[security.scopes.{scope}]",
            f"policies = {_toml([f'{scope}{i}' for i in range(len(pols))])}",
        ]
    return parse("\n".join(lines) + "\n", "test.toml").security


# -- the matrix ----------------------------------------------------------------------------------


def on(*globs: str) -> Pol:
    """Allow these actions on any resource."""
    return P("allow", globs, ["*"])


def to(*globs: str) -> Pol:
    """Allow any action on these resources."""
    return P("allow", ["*"], globs)


ALICE = {"id": "user:alice", "meta": {"team": "ops", "level": 3, "admin": False, "org": {"u": 1}}}
PID1, PID2 = "{app:p|0x00001}", "{app:p|0x00002}"
SEND, SPAWN, TERM = "process.send", "process.spawn", "process.terminate"
REG = "process.registry.register"
ANY = P("allow", ["*"], ["*"])
DENY_SEND = P("deny", [SEND], [PID1])

# (name, policies of scope "s", action, resource, call meta, expected); actor ALICE, scope ["s"]
# fmt: off
CASES: list[tuple[str, list[Pol], str, str, dict[str, Any] | None, bool]] = [
    # -- effects
    ("no policies: denied", [], SEND, PID1, None, False),
    ("allow all", [ANY], SEND, PID1, None, True),
    ("deny only: denied", [P("deny", ["*"], ["*"])], SEND, PID1, None, False),
    ("deny wins over allow", [ANY, DENY_SEND], SEND, PID1, None, False),
    ("deny wins whatever the order", [DENY_SEND, ANY], SEND, PID1, None, False),
    ("deny elsewhere: allowed", [ANY, DENY_SEND], SEND, PID2, None, True),
    # -- action globs
    ("exact action", [on(SEND)], SEND, PID1, None, True),
    ("exact action, other", [on(SEND)], SPAWN, PID1, None, False),
    ("star suffix", [on("process.*")], REG, "n", None, True),
    ("star spans dots", [on("process.*")], "process.a.b.c", "n", None, True),
    ("star needs the prefix", [on("process.*")], "processes.send", "n", None, False),
    ("star matches empty", [on("process.spawn*")], SPAWN, "x", None, True),
    ("spawn star variant", [on("process.spawn*")], "process.spawn.linked", "x", None, True),
    ("star in the middle", [on("process.*.register")], REG, "n", None, True),
    ("two stars", [on("*.*")], SEND, "n", None, True),
    ("two stars need a dot", [on("*.*")], "send", "n", None, False),
    ("question mark one char", [on("process.lin?")], "process.link", "x", None, True),
    ("question mark not zero", [on("process.lin?")], "process.lin", "x", None, False),
    ("question mark not two", [on("process.lin?")], "process.linkk", "x", None, False),
    ("globs are case sensitive", [on("process.*")], "Process.send", "x", None, False),
    ("any of several globs", [on(SPAWN, "process.s?nd")], SEND, "x", None, True),
    ("dot is literal", [on("process.send")], "processXsend", "x", None, False),
    ("dot is literal in a glob", [on("process.s*")], "processXsend", "x", None, False),
    ("bracket is literal", [on("[ab]")], "[ab]", "x", None, True),
    ("bracket is no class", [on("[ab]")], "a", "x", None, False),
    # -- resource globs
    ("pid prefix glob", [to("{app:p|*")], SEND, PID1, None, True),
    ("pid prefix glob, other host", [to("{app:p|*")], SEND, "{db|0x00001}", None, False),
    ("pid with question marks", [to("{app:p|0x0000?}")], SEND, PID2, None, True),
    ("exact resource", [to("context")], "process.context", "context", None, True),
    ("exact resource, other", [to("context")], "process.context", "security", None, False),
    ("both globs must match", [P("allow", [SEND], [PID2])], SEND, PID1, None, False),
    ("star spans a newline", [to("a*")], SEND, "a\nb", None, True),
    ("empty resource", [to("*")], SEND, "", None, True),
    # -- eq / ne
    ("eq actor.id", [allow(C("actor.id", "eq", "user:alice"))], SEND, PID1, None, True),
    ("eq actor.id, other", [allow(C("actor.id", "eq", "user:bob"))], SEND, PID1, None, False),
    ("eq actor.meta key", [allow(C("actor.meta.team", "eq", "ops"))], SEND, PID1, None, True),
    ("eq nested actor.meta", [allow(C("actor.meta.org.u", "eq", 1))], SEND, PID1, None, True),
    ("eq int", [allow(C("actor.meta.level", "eq", 3))], SEND, PID1, None, True),
    ("eq int equals float", [allow(C("actor.meta.level", "eq", 3.0))], SEND, PID1, None, True),
    ("eq false is not 0", [allow(C("actor.meta.admin", "eq", 0))], SEND, PID1, None, False),
    ("eq false", [allow(C("actor.meta.admin", "eq", False))], SEND, PID1, None, True),
    ("eq missing: false", [allow(C("actor.meta.nope", "eq", "x"))], SEND, PID1, None, False),
    ("eq through a non-table", [allow(C("actor.meta.team.x", "eq", "x"))], SEND, PID1, None, False),
    ("eq action", [allow(C("action", "eq", SEND))], SEND, PID1, None, True),
    ("eq action, other", [allow(C("action", "eq", SPAWN))], SEND, PID1, None, False),
    ("eq resource", [allow(C("resource", "eq", PID1))], SEND, PID1, None, True),
    ("eq meta.pid", [allow(C("meta.pid", "eq", PID2))], SEND, PID1, {"pid": PID2}, True),
    ("eq meta.pid, other", [allow(C("meta.pid", "eq", PID2))], SEND, PID1, {"pid": PID1}, False),
    ("eq meta.pid, no meta", [allow(C("meta.pid", "eq", PID2))], SEND, PID1, None, False),
    ("eq nested meta", [allow(C("meta.a.b", "eq", 1))], SEND, PID1, {"a": {"b": 1}}, True),
    ("eq list value", [allow(C("meta.l", "eq", [1, "x"]))], SEND, PID1, {"l": (1, "x")}, True),
    ("eq unhashable meta value", [allow(C("meta.x", "eq", "a"))], SEND, PID1, {"x": {1}}, False),
    ("nin unhashable meta value", [allow(C("meta.x", "nin", ["a"]))], SEND, PID1, {"x": {1}}, True),
    ("ne", [allow(C("actor.id", "ne", "user:bob"))], SEND, PID1, None, True),
    ("ne, equal", [allow(C("actor.id", "ne", "user:alice"))], SEND, PID1, None, False),
    ("ne missing: true", [allow(C("meta.pid", "ne", PID1))], SEND, PID1, None, True),
    ("ne bool vs int", [allow(C("actor.meta.admin", "ne", 0))], SEND, PID1, None, True),
    # -- in / nin
    ("in", [allow(C("actor.meta.team", "in", ["dev", "ops"]))], SEND, PID1, None, True),
    ("in, absent", [allow(C("actor.meta.team", "in", ["dev"]))], SEND, PID1, None, False),
    ("in empty list", [allow(C("actor.meta.team", "in", []))], SEND, PID1, None, False),
    ("in missing: false", [allow(C("meta.pid", "in", [PID1]))], SEND, PID1, None, False),
    ("in ints", [allow(C("actor.meta.level", "in", [1, 2, 3]))], SEND, PID1, None, True),
    ("in: false not in [0]", [allow(C("actor.meta.admin", "in", [0]))], SEND, PID1, None, False),
    ("in action", [allow(C("action", "in", [SPAWN, SEND]))], SEND, PID1, None, True),
    ("in of lists", [allow(C("meta.l", "in", [[1, 2]]))], SEND, PID1, {"l": [1, 2]}, True),
    ("nin", [allow(C("actor.meta.team", "nin", ["dev"]))], SEND, PID1, None, True),
    ("nin, present", [allow(C("actor.meta.team", "nin", ["ops"]))], SEND, PID1, None, False),
    ("nin missing: true", [allow(C("meta.pid", "nin", [PID1]))], SEND, PID1, None, True),
    ("nin resource", [allow(C("resource", "nin", [PID1]))], SEND, PID2, None, True),
    # -- exists
    ("exists", [allow(C("actor.meta.team", "exists", True))], SEND, PID1, None, True),
    ("exists default true", [allow(C("actor.meta.team", "exists"))], SEND, PID1, None, True),
    ("exists, absent", [allow(C("actor.meta.nope", "exists", True))], SEND, PID1, None, False),
    ("exists false, absent", [allow(C("actor.meta.no", "exists", False))], SEND, PID1, None, True),
    ("exists false, present", [allow(C("actor.meta.team", "exists", False))], SEND, PID1, None,
     False),
    ("exists meta.pid", [allow(C("meta.pid", "exists", True))], SEND, PID1, {"pid": PID2}, True),
    ("exists falsy value", [allow(C("actor.meta.admin", "exists", True))], SEND, PID1, None, True),
    # -- matches
    ("matches", [allow(C("actor.id", "matches", "^user:"))], SEND, PID1, None, True),
    ("matches is a search", [allow(C("actor.id", "matches", "ali"))], SEND, PID1, None, True),
    ("matches, no", [allow(C("actor.id", "matches", "^service:"))], SEND, PID1, None, False),
    ("matches an int as text", [allow(C("actor.meta.level", "matches", "^3$"))], SEND, PID1, None,
     True),
    ("matches missing: false", [allow(C("meta.pid", "matches", ".*"))], SEND, PID1, None, False),
    ("matches resource", [allow(C("resource", "matches", r"\|0x0000[12]\}$"))], SEND, PID2, None,
     True),
    # -- all conditions must hold
    ("two conditions hold", [allow(C("actor.meta.team", "eq", "ops"), C("action", "eq", SEND))],
     SEND, PID1, None, True),
    ("one of two fails", [allow(C("actor.meta.team", "eq", "ops"), C("action", "eq", SPAWN))],
     SEND, PID1, None, False),
    # -- deny with conditions
    ("deny unless own pid", [ANY, P("deny", [TERM], ["*"], C("meta.pid", "ne", PID1))],
     TERM, PID2, {"pid": PID1}, True),
    ("deny other pid", [ANY, P("deny", [TERM], ["*"], C("meta.pid", "ne", PID1))],
     TERM, PID2, {"pid": PID2}, False),
    ("deny whose condition fails", [ANY, P("deny", ["*"], ["*"], C("actor.id", "eq", "u:b"))],
     SEND, PID1, None, True),
    ("meta deny over meta allow",
     [allow(C("meta.x", "eq", 1)), P("deny", ["*"], ["*"], C("meta.y", "eq", 1))],
     SEND, PID1, {"x": 1, "y": 1}, False),
    ("meta allow when the deny fails",
     [allow(C("meta.x", "eq", 1)), P("deny", ["*"], ["*"], C("meta.y", "eq", 1))],
     SEND, PID1, {"x": 1, "y": 2}, True),
]
# fmt: on


@pytest.mark.parametrize(
    ("pols", "action", "resource", "meta", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_matrix(
    pols: list[Pol], action: str, resource: str, meta: dict[str, Any] | None, expected: bool
) -> None:
    """One cell: ALICE under scope s with these policies; check, explain and the model agree."""
    sec = security({"s": pols})
    ev = PolicySet.compile(sec).evaluator(ALICE, ["s"])
    assert ev.check(action, resource, meta) is expected
    assert ev.check(action, resource, meta) is expected  # again, from the decision cache
    assert ev.explain(action, resource, meta).startswith("allowed") is expected
    assert model(sec, ALICE, ["s"], action, resource, meta) is expected


# -- callers without an actor or a scope, admin, scopes ---------------------------------------

# (mode, actor, scope, expected) with one scope "s" that allows everything
CALLERS = [
    ("permissive", None, None, True),
    ("permissive", None, ["s"], True),
    ("permissive", ALICE, None, True),
    ("permissive", ALICE, [], True),
    ("strict", None, None, False),
    ("strict", None, ["s"], False),
    ("strict", ALICE, None, False),
    ("strict", ALICE, [], False),
    ("strict", ALICE, ["s"], True),
    ("strict", ADMIN, None, True),
    ("strict", ADMIN, ["nope"], True),
    ("strict", {"id": "system:admin"}, [], True),
    ("strict", ALICE, ["nope"], False),
    ("permissive", ALICE, ["nope"], False),
    ("strict", ALICE, ["nope", "s"], True),
]


@pytest.mark.parametrize(("mode", "actor", "scope", "expected"), CALLERS)
def test_callers(
    mode: str, actor: dict[str, Any] | None, scope: list[str] | None, expected: bool
) -> None:
    """Mode decides for a caller lacking actor or scope; admin passes; unknown scopes add none."""
    sec = security({"s": [ANY]}, mode)
    assert PolicySet.compile(sec).evaluator(actor, scope).check(SEND, PID1) is expected
    assert model(sec, actor, scope, SEND, PID1, None) is expected


def test_admin_passes_a_deny() -> None:
    """system:admin is allowed even what its scope's policies deny."""
    sec = security({"s": [P("deny", ["*"], ["*"])]}, "strict")
    assert PolicySet.compile(sec).evaluator(ADMIN, ["s"]).check("process.terminate", PID1)


def test_default_security_is_permissive() -> None:
    """A config without [security] compiles to permissive mode, allowing a caller with no scope."""
    ps = PolicySet.compile(parse("", "test.toml").security)
    assert ps.mode == "permissive"
    assert ps.evaluator(None, None).check(SEND, PID1)
    assert not ps.evaluator(ALICE, ["s"]).check(SEND, PID1)


def test_policies_of_several_scopes_combine() -> None:
    """A deny in one of the caller's scopes beats an allow in another."""
    ps = PolicySet.compile(security({"a": [ANY], "d": [P("deny", [SEND], ["*"])]}))
    assert ps.evaluator(ALICE, ["a"]).check(SEND, PID1)
    assert not ps.evaluator(ALICE, ["a", "d"]).check(SEND, PID1)
    assert ps.evaluator(ALICE, ["a", "d"]).check(SPAWN, "app:x")


def test_config_actor_is_accepted() -> None:
    """A config Actor struct evaluates like the equivalent dict."""
    ps = PolicySet.compile(security({"s": [allow(C("actor.meta.team", "eq", "ops"))]}))
    assert ps.evaluator(Actor("user:x", {"team": "ops"}), ("s",)).check(SEND, PID1)
    assert not ps.evaluator(Actor("user:x"), ("s",)).check(SEND, PID1)


def test_config_sent_to_workers_decides_alike() -> None:
    """A SecurityConfig round-tripped through msgspec builtins (as workers get it) decides alike."""
    sec = security(
        {"s": [allow(C("actor.meta.x", "in", [True, "a"]), C("meta.pid", "nin", [PID2]))]}
    )
    cases = [({"x": True}, {"pid": PID1}), ({"x": 1}, None), ({"x": "a"}, {"pid": PID2})]
    for config in (sec, msgspec.convert(msgspec.to_builtins(sec), SecurityConfig)):
        ps = PolicySet.compile(config)
        got = [ps.evaluator({"id": "u:a", "meta": x}, ["s"]).check(SEND, PID1, m) for x, m in cases]
        assert got == [True, False, False]


def test_scope_as_a_string_is_refused() -> None:
    """A bare string scope is a TypeError, not a scope per character."""
    with pytest.raises(TypeError):
        PolicySet.compile(security({"s": [ANY]})).evaluator(ALICE, "s")


def test_evaluators_are_cached_per_actor_meta_and_scope() -> None:
    """Same actor and scope: the same evaluator; other meta (true is not 1) or scope: another."""
    ps = PolicySet.compile(security({"s": [allow(C("actor.meta.x", "eq", 1))]}))
    one = ps.evaluator({"id": "u:a", "meta": {"x": 1}}, ["s"])
    assert ps.evaluator({"id": "u:a", "meta": {"x": 1}}, ("s",)) is one
    true = ps.evaluator({"id": "u:a", "meta": {"x": True}}, ["s"])
    assert true is not one
    assert one.check(SEND, PID1) and not true.check(SEND, PID1)
    assert ps.evaluator({"id": "u:a", "meta": {"x": 1}}, ["s", "s"]) is not one


def test_decision_cache_respects_call_meta() -> None:
    """A cached (action, resource) still asks each call's meta when a condition reads it."""
    ev = PolicySet.compile(security({"s": [allow(C("meta.pid", "eq", PID1))]})).evaluator(
        ALICE, ["s"]
    )
    assert [ev.check(SEND, PID2, {"pid": p}) for p in (PID1, PID2, PID1)] == [True, False, True]
    assert not ev.check(SEND, PID2)


DENY = P("deny", [SEND], ["*"])
NO_ACTOR = "caller has no actor or scope"

# (mode, actor, scope, policies of scope "s", call meta, explain(SEND, PID1, meta))
# fmt: off
EXPLAIN = [
    ("strict", ALICE, ["s"], [DENY, ANY], None, 'denied by policy "s0"'),
    ("strict", ALICE, ["s"], [ANY, DENY], None, 'denied by policy "s1"'),
    ("strict", ALICE, ["s"], [on(SPAWN), ANY], None, 'allowed by policy "s1"'),
    ("strict", ALICE, ["s"], [on(SPAWN)], None, f"no policy allows {SEND} on {PID1}"),
    ("strict", ALICE, ["s"], [allow(C("meta.pid", "exists"))], {"pid": PID2},
     'allowed by policy "s0"'),
    ("strict", ALICE, [], [ANY], None, f"denied: {NO_ACTOR} (strict mode)"),
    ("permissive", None, ["s"], [], None, f"allowed: {NO_ACTOR} (permissive mode)"),
    ("strict", ADMIN, None, [], None, 'allowed: actor "system:admin" may do anything'),
]
# fmt: on


@pytest.mark.parametrize(("mode", "actor", "scope", "pols", "meta", "message"), EXPLAIN)
def test_explain(
    mode: str,
    actor: dict[str, Any] | None,
    scope: list[str],
    pols: list[Pol],
    meta: dict[str, Any] | None,
    message: str,
) -> None:
    """explain names the first deciding policy in scope order, or says why none decides."""
    ev = PolicySet.compile(security({"s": pols}, mode)).evaluator(actor, scope)
    assert ev.explain(SEND, PID1, meta) == message


# -- the model: SPEC 7 read directly, nothing precompiled or cached -----------------------------

MISSING = object()


def glob(pattern: str, s: str) -> bool:
    """``*`` any run, ``?`` one character, all else literal."""
    if not pattern:
        return not s
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(glob(rest, s[i:]) for i in range(len(s) + 1))
    return bool(s) and (head == "?" or head == s[0]) and glob(rest, s[1:])


def same(a: Any, b: Any) -> bool:
    """Python equality, but a bool never equals a number; lists and tuples alike."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def holds(field: str, op: str, value: Any, env: dict[str, Any]) -> bool:
    x: Any = env
    for key in field.split("."):
        x = x[key] if isinstance(x, dict) and key in x else MISSING
        if x is MISSING:
            break
    present = x is not MISSING
    if op == "exists":
        return present is value
    if op in ("ne", "nin"):
        return not holds(field, {"ne": "eq", "nin": "in"}[op], value, env)
    if not present:
        return False
    if op == "eq":
        return same(x, value)
    if op == "in":
        return any(same(x, v) for v in value)
    return re.search(value, str(x)) is not None  # matches


def model(
    sec: SecurityConfig,
    actor: dict[str, Any] | None,
    scope: Sequence[str] | None,
    action: str,
    resource: str,
    meta: dict[str, Any] | None,
) -> bool:
    if actor is not None and actor["id"] == "system:admin":
        return True
    if actor is None or not scope:
        return sec.mode == "permissive"
    env = {
        "actor": {"id": actor["id"], "meta": actor.get("meta", {})},
        "action": action,
        "resource": resource,
        "meta": meta or {},
    }
    names = [n for s in scope if s in sec.scopes for n in sec.scopes[s].policies]
    matched = [
        sec.policies[n]
        for n in names
        if any(glob(g, action) for g in sec.policies[n].actions)
        and any(glob(g, resource) for g in sec.policies[n].resources)
        and all(holds(c.field, c.op, c.value, env) for c in sec.policies[n].conditions)
    ]
    if any(p.effect == "deny" for p in matched):
        return False
    return any(p.effect == "allow" for p in matched)


# -- property: check equals the model on random small policy sets ---------------------------


Strategy = st.SearchStrategy[Any]


def pick(*options: Strategy) -> Strategy:
    """One of ``options``, chosen uniformly (``st.one_of`` is skewed towards some)."""
    return st.sampled_from(range(len(options))).flatmap(lambda i: options[i])


def mostly(common: Strategy, *rare: Strategy) -> Strategy:
    """``common`` in four of five draws, else one of ``rare``."""
    return pick(*[common] * (4 * len(rare)), *rare)


# Small pools, shared by the conditions and the values they read, so conditions often hold.
# fmt: off
ACTIONS = ["process.send", "process.spawn", "process.spawn.linked", REG, "x"]
RESOURCES = [PID1, PID2, "db", "a.b", "[x]", ""]
ACTION_GLOBS = ["*", "process.*", "process.s*", "process.spawn*", "?rocess.send", "process.spawn?",
                *ACTIONS]
RESOURCE_GLOBS = ["*", "{app:p|*", "{app:p|0x0000?}", "d?", "d*", "a.*", "[x]", "?",
                  *RESOURCES[:-1]]
XS = [True, 1, 0, 1.0, "a"]  # values of meta.x and actor.meta.x: bools meet numbers
IDS, PIDS = ["user:alice", "user:bob"], [PID1, PID2]
FIELD_VALUES: dict[str, list[Any]] = {
    "actor.id": IDS, "actor.meta.x": XS, "actor.meta.x.y": XS, "actor": XS,
    "action": ACTIONS[:3], "resource": RESOURCES[:3], "meta.pid": PIDS, "meta.x": XS,
    "meta.x.y": XS,
}
REGEXES = ["^user:a", "1", "^T", r"0x0000[12]", "spawn", "^$", "a"]
# fmt: on


def condition(field: str) -> Strategy:
    """Any op on ``field``, with values from the pool that field's values come from."""
    values = st.sampled_from(FIELD_VALUES[field])
    return pick(
        st.builds(C, st.just(field), st.sampled_from(["eq", "ne"]), values),
        st.builds(C, st.just(field), st.sampled_from(["in", "nin"]), st.lists(values, max_size=2)),
        st.builds(C, st.just(field), st.just("exists"), st.booleans()),
        st.builds(C, st.just(field), st.just("matches"), st.sampled_from(REGEXES)),
    )


conditions = st.sampled_from(list(FIELD_VALUES)).flatmap(condition)
policies = st.builds(
    lambda e, a, r, c: P(e, a, r, *c),
    st.sampled_from(["allow", "allow", "deny"]),
    st.lists(mostly(st.sampled_from(ACTION_GLOBS), st.just("*")), min_size=1, max_size=2),
    st.lists(mostly(st.sampled_from(RESOURCE_GLOBS), st.just("*")), min_size=1, max_size=2),
    pick(st.just([]), st.lists(conditions, min_size=1, max_size=2)),
)
X = mostly(st.sampled_from(XS), st.fixed_dictionaries({"y": st.sampled_from(XS)}))
metas = st.fixed_dictionaries({}, optional={"x": X, "pid": st.sampled_from(PIDS)})
users = st.builds(
    lambda i, x: {"id": i, "meta": x},
    st.sampled_from(IDS),
    st.fixed_dictionaries({}, optional={"x": X}),
)

# Mostly callers whose policies decide: the fixed answers (no actor, no scope, admin) are simple.
actors = mostly(users, st.none(), st.just(ADMIN))
scopes = mostly(
    st.lists(st.sampled_from(["s", "t", "nope"]), min_size=1, max_size=3), st.none(), st.just([])
)


@settings(max_examples=120, deadline=None)
@given(
    config=st.fixed_dictionaries(
        {"s": st.lists(policies, min_size=1, max_size=5), "t": st.lists(policies, max_size=3)}
    ),
    mode=st.sampled_from(["strict", "permissive"]),
    actor=actors,
    scope=scopes,
    call_metas=st.lists(pick(st.none(), metas), min_size=1, max_size=3),
)
def test_check_agrees_with_the_model(
    config: dict[str, list[Pol]],
    mode: str,
    actor: dict[str, Any] | None,
    scope: list[str] | None,
    call_metas: list[dict[str, Any] | None],
) -> None:
    """On random policy sets, one cached evaluator answers every query as the model does."""
    sec = security(config, mode)
    ev = PolicySet.compile(sec).evaluator(actor, scope)
    for meta in call_metas:  # the outer loop, so later metas meet cached decisions
        for action in ACTIONS:
            for resource in RESOURCES:
                expected = model(sec, actor, scope, action, resource, meta)
                assert ev.check(action, resource, meta) is expected, (action, resource, meta)
                assert ev.explain(action, resource, meta).startswith("allowed") is expected


def test_unknown_field_root_is_refused_at_load() -> None:
    """A condition on an unknown field root (a typo like actr.id) is a config error."""
    from actord.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown field"):
        parse(
            '[security.policies.p]\nactions = ["*"]\nresources = ["*"]\neffect = "allow"\n'
            'conditions = [{ field = "actr.id", op = "eq", value = "x" }]\n',
            "test.toml",
        )
