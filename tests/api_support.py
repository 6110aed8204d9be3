"""Shared set-up of the SPEC section 3 API tests: the process table and the placement matrix.

A probe runs on ``probe_host`` and starts its targets on ``host``: ``t:a`` -> ``t:a`` keeps
everything on one worker (``t:a`` has one), ``t:a`` -> ``t:b`` crosses hosts, and
``t:b`` -> ``t:b`` crosses workers of one host (the router puts a new process on the
least-loaded worker, so the probe's first child lands on the other ``t:b`` worker). The
other-node placement runs the probe on ``t:a`` of node n1 and its targets on ``t:a`` of n2
(``n2@t:a``): the test's ``daemon`` is then n1 of the module's three-node ``cluster``
(tests/conftest.py, tests/cluster_support.py), started only when such a case runs.
"""

from __future__ import annotations

import pytest

#: helper actors of ``tests/actors/api_probes.py`` every API test daemon knows
HELPERS = ("recorder", "sender", "waiter", "reporter", "crasher", "returner", "witness",
           "ctx_reader")

#: a host of another node: ``t:a`` of n2, seen from n1
OTHER_NODE = "n2@t:a"

#: marks of every other-node case (the one place to switch them off)
REMOTE: tuple[pytest.MarkDecorator, ...] = ()

#: targets on the probe's (``t:a``) own worker, or on another host
ON_HOSTS = pytest.mark.parametrize("host", ["t:a", "t:b"])

_LOCAL = [("t:a", "t:a"), ("t:a", "t:b"), ("t:b", "t:b")]
_LOCAL_IDS = ["same-worker", "other-host", "other-worker"]

#: probe and targets on one worker, on two hosts, on two workers of one host (one node)
LOCAL_PLACEMENTS = pytest.mark.parametrize(("probe_host", "host"), _LOCAL, ids=_LOCAL_IDS)

#: the local placements, and probe and targets on two nodes
PLACEMENTS = pytest.mark.parametrize(
    ("probe_host", "host"),
    [*_LOCAL, pytest.param("t:a", OTHER_NODE, marks=REMOTE)],
    ids=[*_LOCAL_IDS, "other-node"],
)


def probe_pid_host(probe_host: str, host: str) -> str:
    """The host part of the probe's own PID: node-qualified (``n1@``) on the cluster."""
    return f"n1@{probe_host}" if "@" in host else probe_host


def processes(module: str, *probes: str) -> dict[str, str]:
    """The process table: ``api:<name>`` for the helpers and for ``module``'s probes."""
    table = {f"api:{name}": f"api_probes:{name}" for name in HELPERS}
    table.update({f"api:{name}": f"{module}:{name}" for name in probes})
    return table
