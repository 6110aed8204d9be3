"""The benchmark still works: ``scripts/bench.py --quick`` runs every scenario and prints its table.

A smoke test only: no timing is asserted (the numbers of a quick run mean nothing, and this
machine is shared), only that every scenario and baseline produced a number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)"]


def test_bench_quick_runs_and_prints_the_table(tmp_path: Path) -> None:
    """`bench.py --quick --json` exits 0, prints the table and writes a sample per scenario."""
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
    assert [s["key"] for s in result["scenarios"]] == list("abcdefg")
    assert all(len(s["actord"]["samples"]) == 1 for s in result["scenarios"])
    assert result["errors"] == {}
