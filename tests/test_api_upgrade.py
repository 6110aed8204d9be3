"""SPEC section 5: ``process.upgrade`` keeps the PID and its state, loads changed code, and a
failure is an abnormal end ``"upgrade: ..."``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actord.testing import Daemon, wait_for
from tests.api_support import LOCAL_PLACEMENTS, ON_HOSTS, processes
from tests.conftest import ACTORS, assert_nothing_left, config_text

PROCESSES = {
    **processes(
        "api_probes_upgrade", "up_v1", "up_v2", "up_to_waiter", "up_unknown", "up_bad_calls",
        "up_from_task", "up_in_task_group", "upgrade_keeps", "upgrade_failures", "hot_reload",
        "hot_indirect",
    ),
    # modules written to a temporary directory by this test module, one per test and host
    **{f"hot:{case}_{h}": f"hot_{case}_{h}:main"
       for case in ("new", "broken", "pair", "dep") for h in "ab"},
}

HOT_SOURCE = '''\
from actord import process

VERSION = {version}


async def main(parent):
    process.send(parent, "version", [VERSION, process.pid(), process.id()])
    msg = await process.inbox().receive()
    if msg.topic == "upgrade":
        process.upgrade(None, parent)
    return VERSION
'''
# hot_pair_X imports hot_dep_X, then upgrades to it: an unchanged module is not re-imported
PAIR_SOURCE = '''\
import hot_dep_{h}

from actord import process


async def main(parent):
    process.send(parent, "version", [hot_dep_{h}.LOADED, process.id()])
    process.upgrade("hot:dep_{h}", parent)
'''
DEP_SOURCE = '''\
import time

from actord import process

LOADED = time.monotonic_ns()


async def main(parent):
    process.send(parent, "version", [LOADED, process.id()])
    await process.inbox().receive()
    return LOADED
'''
BROKEN_SOURCE = "from actord import process\n\nasync def main(parent) -> :\n    pass\n"


@pytest.fixture(scope="module")
def hot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory on the workers' python_path holding version 1 of every hot module."""
    path = tmp_path_factory.mktemp("hot")
    for case in ("new", "broken"):
        for h in "ab":
            (path / f"hot_{case}_{h}.py").write_text(HOT_SOURCE.format(version=1))
    for h in "ab":
        (path / f"hot_pair_{h}.py").write_text(PAIR_SOURCE.format(h=h))
        (path / f"hot_dep_{h}.py").write_text(DEP_SOURCE)
    return path


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, hot_dir: Path) -> Iterator[Daemon]:
    text = config_text(PROCESSES)
    paths = f'python_path = ["{ACTORS}"]'
    assert paths in text
    text = text.replace(paths, f'python_path = ["{ACTORS}", "{hot_dir}"]')
    d = Daemon(tmp_path_factory.mktemp("daemon"), text).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        try:
            assert_nothing_left(d)
        finally:
            assert d.stop() == 0, d.log()


@LOCAL_PLACEMENTS
def test_upgrade_keeps_pid_mail_edges_and_names(daemon: Daemon, probe_host: str, host: str) -> None:
    """Same PID, queued mail (in order, with senders), edges, names; trap_links reset; new id()."""
    out = daemon.exec("api:upgrade_keeps", probe_host, host)
    me, child, report = out["me"], out["child"], out["report"]
    assert out["ready"] == {"id": "api:up_v1", "opts": {"trap_links": True}}
    assert report["pid"] == child
    assert report["id"] == "api:up_v2"
    assert report["opts"] == {"trap_links": False}
    # at least m1, m2 (inbox) and l1 (listen) waited in channels when upgrade was called
    queued_inbox, queued_kept = report["queued"]
    assert queued_inbox >= 2 and queued_kept >= 1
    assert report["lookup"] == child and out["lookup_here"]
    assert report["inbox"] == [["m1", me, 1], ["m2", me, 2], ["m3", me, 3],
                               ["ctl", me, "after"], ["end", me, None]]
    assert report["kept"] == [["kept", me, "l1"], ["kept", me, "l2"]]
    terminated = {"error": "process terminated"}
    assert out["events"] == [["pid.exit", True, terminated], ["pid.link.down", True, terminated]]


@LOCAL_PLACEMENTS
def test_upgrade_failures_and_call_site_checks(daemon: Daemon, probe_host: str, host: str) -> None:
    """Unknown id: abnormal "upgrade: ..."; bad args INVALID; from a task or TaskGroup works."""
    out = daemon.exec("api:upgrade_failures", probe_host, host)
    (k1, same1, r1), (k2, same2, r2) = out["events"]
    assert (k1, k2) == ("pid.exit", "pid.link.down") and same1 and same2
    assert r1 == r2 and r1["error"].startswith("upgrade: ") and "api:nope" in r1["error"]
    assert out["bad_calls"] == {"bad_id": "INVALID", "bad_args": "INVALID",
                                "still": "api:up_bad_calls"}
    assert out["from_task"] == ["from-task"]
    assert out["in_task_group"] == ["from-group"]


@ON_HOSTS
def test_upgrade_to_another_id_shows_in_ps(daemon: Daemon, host: str) -> None:
    """After an upgrade the node lists the process under its new id, with its names."""
    name = f"up-ps-{host}"
    pid = daemon.call("spawn", id="api:up_to_waiter", host=host, name=name)
    wait_for(lambda: [(p["id"], p["names"]) for p in daemon.call("ps") if p["pid"] == pid]
             == [("api:waiter", [name])], timeout=5, what="upgraded process in ps")
    daemon.call("kill", dest=name)


@ON_HOSTS
def test_upgrade_loads_module_changed_on_disk(daemon: Daemon, hot_dir: Path, host: str) -> None:
    """upgrade() re-imports a module changed on disk since it was imported (a deploy)."""
    h = host[-1]
    path = hot_dir / f"hot_new_{h}.py"
    new = HOT_SOURCE.format(version=2) + "\n# version 2, deployed while running\n"
    out = daemon.exec("api:hot_reload", "t:a", f"hot:new_{h}", host, str(path), new)
    child = out["child"]
    assert out["before"] == [1, child, f"hot:new_{h}"]
    assert out["after"] == [2, child, f"hot:new_{h}"]
    assert out["exit"] == {"value": 2}


@ON_HOSTS
def test_upgrade_to_broken_module_is_an_abnormal_end(
    daemon: Daemon, hot_dir: Path, host: str
) -> None:
    """A changed module that fails to load ends the process with "upgrade: SyntaxError: ..."."""
    h = host[-1]
    path = hot_dir / f"hot_broken_{h}.py"
    out = daemon.exec("api:hot_reload", "t:a", f"hot:broken_{h}", host, str(path), BROKEN_SOURCE)
    assert out["before"][0] == 1
    assert out["exit"]["error"].startswith("upgrade: SyntaxError: "), out


@ON_HOSTS
def test_upgrade_does_not_reimport_an_unchanged_module(daemon: Daemon, host: str) -> None:
    """An upgrade keeps an unchanged module (imported earlier, even indirectly) and its state."""
    h = host[-1]
    before, after, end = daemon.exec("api:hot_indirect", "t:a", f"hot:pair_{h}", host)
    assert before[1] == f"hot:pair_{h}" and after[1] == f"hot:dep_{h}"
    assert after[0] == before[0] and end == {"value": before[0]}

