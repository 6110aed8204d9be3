"""The benchmark still works: ``scripts/bench.py --quick`` runs every scenario and prints its table.

A smoke test only: no timing is asserted (the numbers of a quick run mean nothing, and this
machine is shared), only that every scenario and baseline produced a number, the cross-node
ones (h), (i) included (a real nats-server and two clustered daemons, started by the bench).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)", "(h)", "(i)"]


def test_bench_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    """`bench.py --quick --json` exits 0, prints the table and writes a sample per scenario,
    (h) and (i) beside their raw nats-py baselines."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    header = next(line for line in r.stdout.splitlines() if line.startswith("scenario"))
    assert [c.strip() for c in header.split("|")] == [
        "scenario", "actord median", "min", "max", "baseline median", "ratio", "target", "met?",
    ]
    for key in SCENARIOS:
        row = next(line for line in r.stdout.splitlines() if line.startswith(key))
        assert "ERROR" not in row, row
    result = json.loads(out.read_text())
    assert [s["key"] for s in result["scenarios"]] == list("abcdefghi")
    assert all(len(s["actord"]["samples"]) == 1 for s in result["scenarios"])
    by_key = {s["key"]: s for s in result["scenarios"]}
    for key, baseline in (("h", "nats_pingpong"), ("i", "nats_stream")):
        assert by_key[key]["baseline_of"] == baseline
        assert by_key[key]["baseline"] == result["baselines"][baseline]["median"] > 0
    assert result["errors"] == {}


def test_bench_quick_against_another_checkout(tmp_path: Path) -> None:
    """`bench.py --quick --against WORKTREE` runs both trees, each on its own code, and prints
    the new/old table; the old series' daemon and worker imported the worktree's actord."""
    old = tmp_path / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), "HEAD"],
                   capture_output=True, text=True, timeout=60, check=True)
    try:
        out = tmp_path / "against.json"
        r = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--repeat", "3",
             "--only", "a,b,c,d,e", "--against", str(old), "--json", str(out)],
            capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        )
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                       capture_output=True, timeout=60, check=False)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    assert [c.strip() for c in header.split("|")] == [
        "scenario", "new median", "new IQR", "old median", "old IQR", "new/old", "noise",
        "new won", "verdict",
    ]
    for key in SCENARIOS[:5]:
        row = next(line for line in lines if line.startswith(key))
        assert "ERROR" not in row, row
    ran = f"daemon actord from {old}/actord/__init__.py, worker actord from {old}/actord/"
    assert any(ran in line for line in lines), r.stdout
    result = json.loads(out.read_text())
    assert result["errors"] == {}
    for side, tree in (("new", ROOT), ("old", old)):
        for role in ("daemon", "worker"):
            assert Path(result["trees"][side][role]).is_relative_to(tree), (side, role)
    for row in result["scenarios"]:
        assert len(row["new"]["samples"]) == len(row["old"]["samples"]) == 3
        assert row["verdict"].startswith(("within noise", "new better", "new WORSE"))


def test_bench_against_refuses_a_tree_without_actord(tmp_path: Path) -> None:
    """--against a directory that is no actord checkout fails loudly before any daemon runs."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--against",
         str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )
    assert r.returncode == 2
    assert "not a checkout of actord" in r.stderr


def test_bench_cpu_quick_prints_cpu_per_operation() -> None:
    """`bench_cpu.py --quick` exits 0 and prints a CPU row for each side of (h) and (i), each
    naming every process of its chain."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_cpu.py"), "--quick"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    rows = [line for line in r.stdout.splitlines() if line.startswith(("(h)", "(i)"))]
    assert len(rows) == 4, r.stdout
    cells = [[c.strip() for c in row.split("|")] for row in rows]
    assert [c[1] for c in cells] == ["actord", "raw nats-py", "actord", "raw nats-py"], r.stdout
    for c in cells[::2]:
        for name in ("router n1", "worker n1", "router n2", "worker n2", "nats-server"):
            assert name in c[2], c
