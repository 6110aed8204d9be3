"""The shipped config/actord.toml: valid, strict mode, and its demo workload works."""

from __future__ import annotations

from pathlib import Path

from actord import configfile
from actord.testing import Daemon, wait_for

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "actord.toml"


def test_shipped_config_is_strict() -> None:
    """The default config runs in strict mode and every service has an actor and scope."""
    cfg = configfile.load(SHIPPED)
    assert cfg.security.mode == "strict"
    assert all(s.actor is not None and s.scope for s in cfg.services.values())


def test_demo_workload_runs_under_strict_policies(tmp_path: Path) -> None:
    """The demo services start, the ticker reaches echo across hosts, nothing is denied."""
    text = SHIPPED.read_text().replace(
        "[daemon]\n", '[daemon]\nsocket = "@SOCKET@"\n', 1
    ).replace('python_path = ["../examples"]', f'python_path = ["{ROOT / "examples"}"]')
    with Daemon(tmp_path, text) as d:
        wait_for(lambda: {s["state"] for s in d.call("services")} == {"running"})
        wait_for(lambda: "tick 2" in d.log(), timeout=15, what="two ticks")
        assert d.call("status")["routed"] >= 2  # ticker -> echo and echo's replies
        assert d.cli("send", "echo", "hello", '"demo"').returncode == 0
        wait_for(lambda: "echo: 'demo'" in d.log(), what="echo logged the CLI message")
        assert "PERMISSION_DENIED" not in d.log()
        assert "Traceback" not in d.log()
