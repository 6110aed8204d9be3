"""A service is ``running`` only once its entry loaded (README "Service start and READY").

``start``/``restart`` wait for the target worker's STARTED (the spawn's ``SPAWN_ACK``) or the
load error; a start whose entry cannot load exits 1 with that error and is not retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actord.testing import Daemon, wait_for
from tests.conftest import config_text, module_daemon
from tests.test_services import service

PROCESSES = {
    "s:obedient": "service_probes:obedient",
    "s:broken": "start_broken:main",
    "s:slow": "start_slow:main",
    "s:crasher": "service_probes:crasher",
    "s:sleepy": "start_sleepy:main",
}
SLOW = 0.6  # seconds the import of start_slow takes
NODE_SERVICES = (
    service("b:broken", "s:broken", restart="permanent", auto_start="false")
    + service("b:slow", "s:slow", registered="slow", auto_start="false")
    + service("b:good", registered="good", auto_start="false")
    + service("b:crasher", "s:crasher", restart="temporary", auto_start="false")
    + service("b:sleepy", "s:sleepy", host="t:a", restart="permanent", auto_start="false")
)


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where start_slow writes when its import finished."""
    return tmp_path_factory.mktemp("marker") / "imported"


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         marker: Path) -> Iterator[Daemon]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTORD_TEST_SLOW_IMPORT", str(SLOW))
        mp.setenv("ACTORD_TEST_IMPORT_MARKER", str(marker))
        yield from module_daemon(request, tmp_path_factory, PROCESSES, extra=NODE_SERVICES)


def rows(d: Daemon) -> dict[str, dict]:
    return {r["name"]: r for r in d.call("services")}


def test_start_of_a_service_that_cannot_load_exits_1(node: Daemon) -> None:
    """`start` of a service whose module raises at import: exit 1 naming the error, FAILED,
    no process left, and not retried (even with restart = permanent)."""
    for command in ("start", "restart"):
        out = node.cli(command, "b:broken")
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert out.stderr.strip().splitlines() == [
            "actord: service b:broken failed: RuntimeError: broken at import"]
    out = node.cli("start", "b:broken", "--json")
    row = json.loads(out.stdout)
    assert out.returncode == 1 and row["state"] == "failed" and row["pid"] is None
    assert row["reason"] == "could not start" and row["restarts"] == 0
    assert not [p for p in node.call("ps") if p["id"] == "s:broken"]
    assert rows(node)["b:broken"]["state"] == "failed"
    log = node.log()
    assert "service b:broken: could not start: RuntimeError: broken at import" in log
    # the worker logged the import's traceback, naming the module's line
    assert "process s:broken crashed: RuntimeError: broken at import" in log  # crash report
    assert 'start_broken.py", line 3, in <module>' in log


def test_start_returns_once_the_entry_loaded(node: Daemon, marker: Path) -> None:
    """`start` of a service whose import takes SLOW seconds answers `running` only after the
    import finished (the marker exists when the CLI returns)."""
    started = time.monotonic()
    out = node.cli("start", "b:slow", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "running"
    assert marker.exists(), "start answered before the entry was loaded"
    assert float(marker.read_text()) < time.monotonic()
    assert time.monotonic() - started >= SLOW
    assert node.call("registry")["slow"] == rows(node)["b:slow"]["pid"]


def test_start_of_a_good_service_and_one_that_fails_after_starting(node: Daemon) -> None:
    """A loadable entry: `start` exits 0 with `running`; one that loads then raises has
    started (exit 0 with the row of that moment), its end follows its restart policy."""
    out = node.cli("start", "b:good")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("b:good  running  {t:b|")
    out = node.cli("start", "b:crasher", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "running"
    wait_for(lambda: rows(node)["b:crasher"]["state"] == "failed", what="crasher failed")
    assert rows(node)["b:crasher"]["reason"] == "not restarted (restart = temporary)"


def test_stop_while_the_entry_loads(node: Daemon) -> None:
    """`stop` of a service whose entry is still loading (spawned, no STARTED yet): it stops,
    its process ends, it is not restarted, and the waiting `start` exits 1 saying so."""
    env = {**os.environ, "ACTORD_SOCKET": node.socket}
    start = subprocess.Popen([sys.executable, "-m", "actord", "start", "b:sleepy"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        loading = wait_for(lambda: (r := rows(node)["b:sleepy"])["state"] == "starting"
                           and r["pid"] is not None and r, what="b:sleepy spawned")
        stopped = node.call("stop", None, service="b:sleepy")  # within the 2 s import
        assert stopped["state"] == "stopped"
        _, err = start.communicate(timeout=30)
    finally:
        start.kill()
        start.wait()
    assert start.returncode == 1
    assert err.strip().splitlines() == ["actord: service b:sleepy is not running (stopped)"]
    assert loading["pid"] not in {p["pid"] for p in node.call("ps")}
    assert rows(node)["b:sleepy"]["state"] == "stopped"
    assert rows(node)["b:sleepy"]["restarts"] == 0


def test_daemon_with_a_broken_auto_start_service_refuses_to_start(tmp_path: Path) -> None:
    """An auto_start service that cannot load: `actord run` logs why, stops what it started
    and exits 1 (it never became ready)."""
    d = Daemon(tmp_path / "refuse", config_text(
        PROCESSES, extra=service("b:good", registered="good")
        + service("b:broken", "s:broken", depends_on='["b:good"]')))
    r = subprocess.run([sys.executable, "-m", "actord", "run", "--config", str(d.config_path)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    assert ("service b:broken could not start: RuntimeError: broken at import; "
            "stopping (exit 1)") in r.stderr
    assert "actord ready" not in r.stderr
    assert "service b:good: stopping -> stopped" in r.stderr  # what it started, it stopped
    assert not Path(d.socket).exists()
