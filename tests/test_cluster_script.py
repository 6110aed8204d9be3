"""scripts/cluster: a nats-server and three nodes, the ring demo across them, a node kill
noticed, and Ctrl-C stopping everything with no process left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

from actord import configfile
from actord.testing import alive, descendants, wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_cluster_configs_are_valid() -> None:
    """config/cluster/n1..n3 pass check-config and name three different nodes of one cluster."""
    configs = [configfile.load(ROOT / "config" / "cluster" / f"n{i}.toml") for i in (1, 2, 3)]
    for c in configs:
        configfile.check(c, strict=True)
    assert [c.cluster.node for c in configs if c.cluster] == ["n1", "n2", "n3"]
    assert len({c.cluster.name for c in configs if c.cluster}) == 1


def test_scripts_cluster_runs_the_demo_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """The coordinator on n1 spawns members on n2 and n3 and the token crosses n1 -> n2 -> n3
    -> n1; ps --cluster lists the three; kill -9 of n3: n1 and n2 see it down, the coordinator
    gets its member's EXIT "node down: n3" and the ring goes on without it; SIGINT to the
    script's process group (Ctrl-C): exit 0, every node stopped cleanly, no process left."""
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "cluster"), "--workdir", str(tmp_path), "--interval", "0.3",
         "--kill-after", "1", "--restart-after", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    out = lambda: "".join(lines)  # noqa: E731
    try:
        wait_for(lambda: "round 2: n1 -> n2 -> n3 -> n1 in" in out() or proc.poll() is not None,
                 40, what="two rounds across the three nodes")
        wait_for(lambda: "n1  | ring n1 -> n2 -> n1" in out() or proc.poll() is not None,
                 20, what="n3 killed, its member's EXIT, the ring re-formed")
        after = out().index("n1  | ring n1 -> n2 -> n1")
        wait_for(lambda: re.search(r"round \d+: n1 -> n2 -> n1 in", out()[after:])
                 or proc.poll() is not None, 10, what="a round on n1 and n2 only")
        # the script's `actord nodes` (run once n3 is down) has printed its table: a Ctrl-C
        # while that CLI is still starting would interrupt it too (it is in the group)
        wait_for(lambda: re.search(r"^    n3\s+down ", out(), re.M) or proc.poll() is not None,
                 20, what="actord nodes showing n3 down")
        assert proc.poll() is None, out()
        children = descendants(proc.pid)
        assert len(children) >= 3, children  # nats-server, n1, n2 (and their workers)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, out()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(5)
    text = out()
    assert "n1  | member spawned on n2, n3" in text, text
    for node, id in (("n1", "coordinator"), ("n2", "member"), ("n3", "member")):
        # ps --cluster's rows: the node, a PID of that node, its process id
        assert re.search(rf"^    {node}\s+\{{{node}@demo:ring\|\S+\}} demo:{id} ", text, re.M), text
    assert "n1  | member on n3 gone: node down: n3" in text, text
    assert re.search(r"n1  \| node n3 down: no heartbeat", text), text
    assert re.search(r"n2  \| node n3 down: no heartbeat", text), text
    for node in ("n1", "n2"):
        assert f"cluster: node {node} stopped (exit 0)" in text, text
    assert text.rstrip().endswith("cluster: nats-server stopped"), text
    assert [p for p in children if alive(p)] == []
    assert "Traceback" not in text
