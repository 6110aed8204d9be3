"""Shared set-up of the SPEC section 3 API tests: the process table and the placement matrix.

A probe runs on ``probe_host`` and starts its targets on ``host``: ``t:a`` -> ``t:a`` keeps
everything on one worker (``t:a`` has one), ``t:a`` -> ``t:b`` crosses hosts, and
``t:b`` -> ``t:b`` crosses workers of one host (the router puts a new process on the
least-loaded worker, so the probe's first child lands on the other ``t:b`` worker).
"""

from __future__ import annotations

import pytest

#: helper actors of ``tests/actors/api_probes.py`` every API test daemon knows
HELPERS = ("recorder", "sender", "waiter", "reporter", "crasher", "returner", "witness",
           "ctx_reader")

#: targets on the probe's (``t:a``) own worker, or on another host
ON_HOSTS = pytest.mark.parametrize("host", ["t:a", "t:b"])

#: probe and targets on one worker, on two hosts, on two workers of one host
PLACEMENTS = pytest.mark.parametrize(
    ("probe_host", "host"),
    [("t:a", "t:a"), ("t:a", "t:b"), ("t:b", "t:b")],
    ids=["same-worker", "other-host", "other-worker"],
)


def processes(module: str, *probes: str) -> dict[str, str]:
    """The process table: ``api:<name>`` for the helpers and for ``module``'s probes."""
    table = {f"api:{name}": f"api_probes:{name}" for name in HELPERS}
    table.update({f"api:{name}": f"{module}:{name}" for name in probes})
    return table
