"""Benchmark: ns per Evaluator.check for a typical policy set (10 policies with conditions).

Cases, each the best of 5 runs:
  send, cached        process.send to the same few PIDs: the decision is cached per (action, PID)
  send, meta cond     a deny reads meta.pid, so every check still runs that one condition
  send, new PIDs      a fresh target PID on every call: globs and conditions run each time
  spawn, cached       process.spawn of a process id, conditions on actor.meta and resource
  evaluator()         fetching the cached evaluator of an (actor, scope)
  explain             the uncached slow path used for error messages

Run: python scripts/bench_policy.py [checks]    (a benchmark, not a test; nothing is asserted)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from actord.core.config import parse
from actord.core.policy import PolicySet

RUNS = 5

CONFIG = """
[security]
mode = "strict"

[security.policies.send-own-host]
actions = ["process.send", "process.link", "process.unlink", "process.monitor*"]
resources = ["{app:workers|*"]
effect = "allow"
conditions = [{ field = "actor.meta.team", op = "in", value = ["ops", "dev"] }]

[security.policies.spawn-workers]
actions = ["process.spawn*", "process.exec"]
resources = ["app.workers:*"]
effect = "allow"
conditions = [{ field = "actor.id", op = "matches", value = "^service:" }]

[security.policies.hosts]
actions = ["process.host"]
resources = ["app:workers", "app:io"]
effect = "allow"

[security.policies.registry]
actions = ["process.registry.*"]
resources = ["svc.*"]
effect = "allow"
conditions = [{ field = "actor.meta.level", op = "ne", value = 0 }]

[security.policies.context]
actions = ["process.context"]
resources = ["context"]
effect = "allow"

[security.policies.no-security]
actions = ["process.security"]
resources = ["*"]
effect = "deny"
conditions = [{ field = "actor.meta.admin", op = "ne", value = true }]

[security.policies.no-kill-others]
actions = ["process.terminate", "process.cancel"]
resources = ["*"]
effect = "deny"
conditions = [{ field = "meta.pid", op = "ne", value = "{app:workers|0x00001}" }]

[security.policies.no-db]
actions = ["process.*"]
resources = ["{db|*", "db.*"]
effect = "deny"
conditions = [{ field = "actor.meta.team", op = "nin", value = ["dba"] }]

[security.policies.quiet-hours]
actions = ["process.send"]
resources = ["{app:io|*"]
effect = "deny"
conditions = [{ field = "meta.pid", op = "exists", value = true }]

[security.policies.ops-anything]
actions = ["process.*"]
resources = ["*"]
effect = "allow"
conditions = [
  { field = "actor.meta.team", op = "eq", value = "ops" },
  { field = "actor.meta.oncall", op = "eq", value = true },
]

[security.scopes.workers]
policies = ["send-own-host", "spawn-workers", "hosts", "registry", "context", "no-security",
            "no-kill-others", "no-db", "quiet-hours", "ops-anything"]
"""

ACTOR = {"id": "service:ticker", "meta": {"team": "dev", "level": 2}}
SCOPE = ["workers"]
PIDS = [f"{{app:workers|0x{n:05x}}}" for n in range(1, 9)]
META = {"pid": PIDS[0]}


def bench(name: str, n: int, loop: Callable[[int], object]) -> None:
    best = min(_timed(loop, n) for _ in range(RUNS))
    print(f"{name:<18} {best / n:8.0f} ns/call")


def _timed(loop: Callable[[int], object], n: int) -> int:
    start = time.perf_counter_ns()
    loop(n)
    return time.perf_counter_ns() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    policies = PolicySet.compile(parse(CONFIG, "bench.toml").security)
    ev = policies.evaluator(ACTOR, SCOPE)
    check = ev.check
    fresh = [f"{{app:workers|0x{i:05x}}}" for i in range(100, 100 + n)]
    assert check("process.send", PIDS[1], META) and not check("process.terminate", PIDS[1], META)

    def send_cached(n: int) -> None:
        for i in range(n):
            check("process.send", PIDS[i & 7], META)

    def send_meta(n: int) -> None:
        for i in range(n):
            check("process.terminate", PIDS[i & 7], META)

    def send_new(n: int) -> None:
        for i in range(n):
            check("process.send", fresh[i], META)

    def spawn_cached(n: int) -> None:
        for _ in range(n):
            check("process.spawn.linked", "app.workers:handler", META)

    def evaluator(n: int) -> None:
        for _ in range(n):
            policies.evaluator(ACTOR, SCOPE)

    def explain(n: int) -> None:
        for i in range(n):
            ev.explain("process.terminate", PIDS[i & 7], META)

    print(f"{n} calls per run, best of {RUNS}, Python {sys.version.split()[0]}")
    bench("send, cached", n, send_cached)
    bench("send, meta cond", n, send_meta)
    bench("send, new PIDs", n, send_new)
    bench("spawn, cached", n, spawn_cached)
    bench("evaluator()", n // 10, evaluator)
    bench("explain", n // 10, explain)


if __name__ == "__main__":
    main()
