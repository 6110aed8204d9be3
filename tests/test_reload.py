"""Reload (SIGHUP / `actord reload`): validate first, then apply only the differences."""

from __future__ import annotations

import json
import signal

from actord.testing import Daemon, wait_for
from tests.conftest import config_text

PROCESSES = {"t:obedient": "service_probes:obedient", "t:idle": "service_probes:stubborn"}


def services_toml(services: dict[str, str]) -> str:
    """``[services]`` tables: name -> extra TOML lines (process and host are t:obedient/t:a)."""
    return "".join(
        f'[services."{name}"]\nprocess = "t:obedient"\nhost = "t:a"\nrestart = "permanent"\n'
        f"{extra}\n"
        for name, extra in services.items()
    )


def by_name(d: Daemon) -> dict[str, dict]:
    return {row["name"]: row for row in d.call("services")}


def running(d: Daemon, name: str) -> bool:
    return by_name(d).get(name, {}).get("state") == "running"


def test_reload_applies_only_differences(make_daemon) -> None:
    """Changed/added/removed services and hosts are applied; untouched processes keep PIDs."""
    d = make_daemon(PROCESSES, hosts={"t:a": 1, "t:b": 2}, extra=services_toml({
        "s:same": 'args = ["same"]', "s:changed": 'args = ["v1"]', "s:removed": "",
    }))
    wait_for(lambda: all(running(d, n) for n in ("s:same", "s:changed", "s:removed")))
    before = by_name(d)
    idle = d.call("spawn", id="t:idle", host="t:a", args=[], name=None)
    on_b = [d.call("spawn", id="t:idle", host="t:b", args=[], name=None) for _ in range(2)]
    worker_of = {row["pid"]: row["worker"] for row in d.call("ps", host="t:b")}
    assert sorted(worker_of[p] for p in on_b) == [0, 1]  # least-loaded placement
    d.config_path.write_text(config_text(
        {**PROCESSES, "t:new": "service_probes:obedient"},
        hosts={"t:a": 1, "t:b": 1, "t:c": 1},
        extra=services_toml({"s:same": 'args = ["same"]', "s:changed": 'args = ["v2"]',
                             "s:added": ""}),
    ).replace("@SOCKET@", d.socket))
    r = d.cli("reload", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["hosts"] == {"added": ["t:c"], "removed": [], "resized": ["t:b"]}
    assert summary["services"] == {"added": ["s:added"], "removed": ["s:removed"],
                                   "changed": ["s:changed"]}
    assert summary["processes"] == ["t:new"]
    # what the shrink of t:b ended: worker 1 and the process on it, on the CLI and in the log
    [retired] = summary["retired"]
    [on_b1] = [p for p in on_b if worker_of[p] == 1]
    assert retired["worker"] == "t:b/1" and retired["processes"] == [{"pid": on_b1,
                                                                      "id": "t:idle"}]
    assert summary["not_applied"] == [] and summary["not_running"] == []
    assert (f"worker t:b/1 (os pid {retired['os_pid']}) retired by reload: ending its 1 "
            f"processes: {on_b1}") in d.log()
    wait_for(lambda: running(d, "s:changed") and running(d, "s:added"))
    after = by_name(d)
    assert after["s:same"]["pid"] == before["s:same"]["pid"]
    assert after["s:changed"]["pid"] != before["s:changed"]["pid"]
    assert "s:removed" not in after
    pids = {row["pid"] for row in d.call("ps")}
    assert idle in pids and before["s:removed"]["pid"] not in pids
    workers = {(w["host"], w["index"]) for w in d.workers()}
    assert workers == {("t:a", 0), ("t:b", 0), ("t:c", 0)}
    assert d.call("spawn", id="t:new", host="t:c", args=[], name=None).startswith("{t:c|")
    # shrinking t:b retired worker 1: its process ended, the one on worker 0 kept its PID
    assert {p for p in on_b if p in pids} == {p for p in on_b if worker_of[p] == 0}
    d.kill(idle, *(p for p in on_b if p in pids))  # stubborn: spare the shutdown its wait


def test_bad_config_is_refused_and_changes_nothing(make_daemon) -> None:
    """A reload of a broken file fails with one line naming the key; the old config runs on."""
    d = make_daemon(PROCESSES, extra=services_toml({"s:one": ""}))
    wait_for(lambda: running(d, "s:one"))
    pid = by_name(d)["s:one"]["pid"]
    d.config_path.write_text(d.config_path.read_text() + '\n[hosts."t:bad"]\nworkers = 0\n')
    r = d.cli("reload")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert 'hosts."t:bad".workers' in r.stderr
    assert by_name(d)["s:one"]["pid"] == pid
    assert {h["name"] for h in d.call("status")["hosts"]} == {"t:a", "t:b"}


def test_sighup_reloads(make_daemon) -> None:
    """SIGHUP applies the new config like `actord reload`."""
    d = make_daemon(PROCESSES)
    text = d.config_path.read_text() + services_toml({"s:late": ""})
    d.config_path.write_text(text)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: running(d, "s:late"), what="service started by SIGHUP reload")


def test_reload_text_says_what_it_retired_and_what_it_did_not_apply(make_daemon) -> None:
    """`actord reload` text: one line per retired worker with the processes it ended, and a
    warning on stderr naming the [daemon] keys that wait for a restart."""
    d = make_daemon(PROCESSES, hosts={"t:a": 1, "t:b": 2})
    for _ in range(4):  # least-loaded placement: two on each worker of t:b
        d.call("spawn", id="t:idle", host="t:b", args=[], name=None)
    os_pid = {w["index"]: w["os_pid"] for w in d.workers() if w["host"] == "t:b"}[1]
    text = config_text(PROCESSES, hosts={"t:a": 1, "t:b": 1}, shutdown_timeout="7s")
    d.config_path.write_text(text.replace("@SOCKET@", d.socket)
                             .replace("[daemon]\n", '[daemon]\nlog_level = "debug"\n'))
    r = d.cli("reload")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [
        f"retired worker t:b/1 (os pid {os_pid}): ended 2 processes"]
    assert r.stderr.strip().splitlines() == [
        "actord: warning: not applied until the daemon restarts: [daemon] shutdown_timeout, "
        "log_level"]
    assert len(d.call("ps", host="t:b")) == 2
    assert "reload: [daemon] shutdown_timeout, log_level changed" in d.log()
    d.kill(*(row["pid"] for row in d.call("ps", host="t:b")))  # stubborn: spare the shutdown
