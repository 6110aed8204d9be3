"""The benchmark's peers (``bench.py`` with ``scripts/peers/``): statuses, speedups, cleanup.

No timing is asserted. The table logic runs on made-up peer results; the peer scripts
themselves run for real (tiny sizes) only where their library is installed (the ``bench``
extra), and must leave no process and no temp dir behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "scripts" / "peers"


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("actord_bench", ROOT / "scripts" / "bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["actord_bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = load_bench()
peer_common = sys.modules["peer_common"]


def fake_result(samples: dict[str, list[float]]) -> dict[str, Any]:
    return {"peer": "x", "version": "1.0", "sizes": {"rounds": 10, "warmup": 1, "stream": 20,
                                                     "stream_warmup": 2},
            "repeat": 3, "startup_s": 0.5, "samples": samples, "leftovers_killed": 0}


def installed(monkeypatch: pytest.MonkeyPatch, yes: bool) -> None:
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name: object() if yes else None)


def test_peers_not_installed_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, False)
    found = bench.peers(3, set("ab"), {"a": 100.0, "b": 1e5})
    assert {p["status"] for p in found.values()} == {"not installed (pip install -e '.[bench]')"}
    text = "\n".join(bench.peer_report(found))
    assert "Ray not installed (pip install -e '.[bench]')" in text
    assert "peer |" not in text  # no table without a measured peer


@pytest.mark.parametrize("skipped", ["--quick", "--no-peers"])
def test_peers_not_run_when_skipped(monkeypatch: pytest.MonkeyPatch, skipped: str) -> None:
    installed(monkeypatch, True)
    monkeypatch.setattr(bench, "run_peer", lambda *a: pytest.fail("a peer ran"))
    found = bench.peers(1, set("ab"), {}, skipped)
    assert all(p["status"] == f"installed, not run ({skipped})" for p in found.values())


def test_speedups_targets_and_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, True)
    calls = []

    def run_peer(peer: Any, repeat: int, workloads: list[str]) -> dict[str, Any]:
        calls.append((peer.name, repeat, workloads))
        if peer.name == "Ray":
            return fake_result({"pingpong": [900.0, 1000.0, 1100.0], "stream": [5000.0] * 3})
        return fake_result({"pingpong": [250.0] * 3, "stream": [9000.0] * 3})

    monkeypatch.setattr(bench, "run_peer", run_peer)
    found = bench.peers(7, set("abc"), {"a": 100.0, "b": 200_000.0})
    assert calls == [("Ray", 5, ["pingpong", "stream"]),  # capped at PEER_MAX_REPEAT
                     ("Thespian", 5, ["pingpong", "stream"])]
    ray = {w["workload"]: w for w in found["Ray"]["workloads"]}
    assert ray["pingpong"]["speedup"] == pytest.approx(10.0)  # 1000 us / 100 us
    assert (ray["pingpong"]["target"], ray["pingpong"]["met"]) == (">= 10x", True)
    assert ray["stream"]["speedup"] == pytest.approx(40.0)  # 200k msg/s / 5k msg/s
    assert (ray["stream"]["target"], ray["stream"]["met"]) == (">= 50x", False)
    thespian = {w["workload"]: w for w in found["Thespian"]["workloads"]}
    assert (thespian["pingpong"]["speedup"], thespian["pingpong"]["met"]) == (2.5, False)
    assert (thespian["stream"]["target"], thespian["stream"]["met"]) == (None, None)
    assert found["Ray"]["repeat_capped"] is True
    json.dumps(found)  # it goes into --json as it is

    lines = "\n".join(bench.peer_report(found)).splitlines()
    header = [c.strip() for c in lines[0].split("|")]
    assert header == ["peer", "workload", "median", "actord median", "actord speedup",
                      "target", "met?"]
    rows = [[c.strip() for c in line.split("|")] for line in lines[2:6]]
    assert rows[0] == ["Ray", "(a) round trip [us]", "1,000", "100.0", "10.0x", ">= 10x", "yes"]
    assert rows[1][4:] == ["40.0x", ">= 50x", "NO"]
    assert rows[3][4:] == ["22.2x", "-", "n/a"]
    assert any("capped" in line for line in lines)


def test_only_the_workloads_of_the_scenarios_run(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, True)
    calls = []
    monkeypatch.setattr(bench, "run_peer", lambda peer, repeat, workloads: (
        calls.append(workloads) or fake_result({"pingpong": [1.0]})))
    found = bench.peers(1, {"a", "e"}, {"a": 1.0})
    assert calls == [["pingpong"], ["pingpong"]]
    assert [w["workload"] for w in found["Ray"]["workloads"]] == ["pingpong"]
    found = bench.peers(1, {"c"}, {})
    assert found["Ray"]["status"] == "installed, not run (--only has neither a nor b)"


def test_a_failing_peer_is_an_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, True)

    def run_peer(peer: Any, repeat: int, workloads: list[str]) -> dict[str, Any]:
        raise RuntimeError("ray_peer.py exited with 1: boom")

    monkeypatch.setattr(bench, "run_peer", run_peer)
    found = bench.peers(1, set("ab"), {"a": 1.0, "b": 1.0})
    assert found["Ray"]["status"] == "ERROR"
    assert "boom" in found["Ray"]["error"]
    assert "Ray ERROR: RuntimeError: ray_peer.py exited with 1: boom" in \
        "\n".join(bench.peer_report(found))


@pytest.mark.parametrize("script, module", [("thespian_peer.py", "thespian"),
                                            ("ray_peer.py", "ray")])
def test_a_peer_script_runs_and_leaves_nothing(script: str, module: str) -> None:
    """The real library, tiny sizes: numbers for both workloads, no process or dir left."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (the bench extra)")
    marker = os.urandom(8).hex()
    r = subprocess.run(
        [sys.executable, str(PEERS_DIR / script), "--json", "--repeat", "1", "--rounds", "20",
         "--warmup", "5", "--stream", "100", "--stream-warmup", "10"],
        capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, peer_common.MARKER_ENV: marker},
    )
    try:
        assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}"
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert set(result["samples"]) == {"pingpong", "stream"}
        assert all(len(v) == 1 and v[0] > 0 for v in result["samples"].values())
        assert result["leftovers_killed"] == 0
        assert peer_common.marked_pids(marker) == []
        assert peer_common.leftover_dirs(marker) == []
    finally:
        peer_common.reap(marker, grace=0)


def test_peers_compare_with_actord_samples_taken_around_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a live daemon, each peer is compared with actord samples taken right before and
    after it (latency drifts between modes over minutes), not with the run's median."""
    installed(monkeypatch, True)
    monkeypatch.setattr(bench, "run_peer", lambda peer, repeat, workloads: fake_result(
        {"pingpong": [1000.0], "stream": [5000.0]}))
    taken: list[str] = []

    def bracket(key: str) -> float:
        taken.append(key)
        return {"a": 50.0, "b": 400_000.0}[key]

    found = bench.peers(1, set("ab"), {"a": 500.0, "b": 100_000.0}, bracket=bracket)
    per_peer = 2 * 2 * bench.BRACKET_SAMPLES  # (a, b) x (before, after) x samples
    assert len(taken) == 2 * per_peer
    ray = {w["workload"]: w for w in found["Ray"]["workloads"]}
    assert ray["pingpong"]["actord_median"] == 50.0  # not the run's 500
    assert ray["pingpong"]["speedup"] == pytest.approx(20.0)
    assert ray["stream"]["speedup"] == pytest.approx(80.0)
    assert len(ray["pingpong"]["actord_bracket"]) == 2 * bench.BRACKET_SAMPLES
