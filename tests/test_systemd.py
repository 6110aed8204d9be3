"""SPEC section 10 under systemd: the NOTIFY_SOCKET datagrams a real daemon sends, and the unit.

Each test binds its own ``AF_UNIX``/``SOCK_DGRAM`` socket, puts it in ``NOTIFY_SOCKET`` (with
``WATCHDOG_USEC``) before the daemon starts, and reads what arrives with the sender's PID
(``SCM_CREDENTIALS``): under ``NotifyAccess=main`` systemd drops datagrams from any other PID.
A reader thread drains the socket at once, since the kernel queues only
``net.unix.max_dgram_qlen`` (often 10) datagrams and the daemon drops the ones it cannot send.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actord.notify import notify_address, watchdog_interval
from actord.testing import Daemon, wait_for
from tests.conftest import DaemonFactory, config_text

UNIT = Path(__file__).parent.parent / "systemd" / "actord.service"
WATCHDOG_USEC = 200_000  # pings every 0.1 s
WAIT = 15.0
PROCESSES = {
    "t:obedient": "service_probes:obedient",
    "t:environ": "ops_probes:environ",
}
HOSTS = {"t:a": 1}
SERVICES = """
[services."t:first"]
process = "t:obedient"
host = "t:a"
name = "first"
[services."t:second"]
process = "t:obedient"
host = "t:a"
name = "second"
depends_on = ["t:first"]
"""


@dataclass(frozen=True)
class Datagram:
    """One notification: the sender's PID and its ``KEY=value`` fields."""

    pid: int
    fields: dict[str, str]
    at: float  # time.monotonic() when read


class NotifyListener:
    """A bound NOTIFY_SOCKET whose datagrams a thread queues as they arrive."""

    MARKER = "X_TEST_MARKER"

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(notify_address(address) or address)
        self.inbox: queue.Queue[Datagram] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        creds = struct.calcsize("3i")
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(creds))
            except OSError:
                return
            if not data:
                return  # shut down
            pid = -1
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", value[:creds])[0]
            lines = data.decode().split("\n")
            fields = dict(line.split("=", 1) for line in lines if "=" in line)
            self.inbox.put(Datagram(pid, fields, time.monotonic()))

    def until(self, match: Callable[[Datagram], bool], timeout: float = WAIT) -> list[Datagram]:
        """Every datagram up to and including the first that ``match``es."""
        seen: list[Datagram] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise TimeoutError(f"no matching datagram in {timeout}s; got {seen}") from None
            if match(seen[-1]):
                return seen

    def until_field(self, key: str, value: str = "1", timeout: float = WAIT) -> list[Datagram]:
        """Every datagram up to and including the first with ``key=value``."""
        return self.until(lambda d: d.fields.get(key) == value, timeout)

    def drain(self) -> list[Datagram]:
        """Everything sent so far: a marker datagram of our own arrives after all of it."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(f"{self.MARKER}=1".encode(), notify_address(self.address) or self.address)
        return self.until_field(self.MARKER)[:-1]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader: recvmsg returns b""
        self.thread.join(5.0)
        self.sock.close()


def is_ready(d: Datagram) -> bool:
    """A READY=1 datagram."""
    return d.fields.get("READY") == "1"


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (R, S, T, Z...)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    """A NOTIFY_SOCKET in ``tmp_path`` and WATCHDOG_USEC, in the environment daemons inherit."""
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def start(make_daemon: DaemonFactory) -> Daemon:
    """The test node: one host, two auto_start services (second depends on first)."""
    return make_daemon(PROCESSES, hosts=HOSTS, extra=SERVICES)


# -- start-up -------------------------------------------------------------------------------------


def test_ready_after_auto_start_services(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """READY=1 comes from the daemon's PID once every auto_start service runs, with a STATUS."""
    d = start(make_daemon)
    before = notify.until(is_ready)
    ready = before[-1]
    rows = {r["name"]: r for r in d.call("services")}
    assert {n: r["state"] for n, r in rows.items()} == {"t:first": "running",
                                                        "t:second": "running"}
    assert set(d.call("registry")) == {"first", "second"}
    assert all(m.pid == d.pid for m in before), before
    assert ready.fields["STATUS"] == "running: 1 hosts, 1 workers, 2 processes; services 2 running"
    # before READY only progress lines: no second READY, no watchdog ping yet
    assert [set(m.fields) for m in before[:-1]] == [{"STATUS"}] * (len(before) - 1)


def test_ready_waits_for_service_entries_to_load(
    notify: NotifyListener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1 comes only after an auto_start service's entry finished importing (here a
    0.6 s import): the service's module wrote its marker before READY was sent."""
    marker = tmp_path / "imported"
    monkeypatch.setenv("ACTORD_TEST_SLOW_IMPORT", "0.6")
    monkeypatch.setenv("ACTORD_TEST_IMPORT_MARKER", str(marker))
    text = config_text({"t:slow": "start_slow:main"}, hosts=HOSTS,
                       extra='[services."t:slow"]\nprocess = "t:slow"\nhost = "t:a"\n')
    with Daemon(tmp_path / "slow", text) as d:
        ready = notify.until(is_ready)[-1]
        assert marker.exists(), "READY=1 was sent before the service's entry was loaded"
        assert float(marker.read_text()) < ready.at
        assert ready.pid == d.pid
        assert ready.fields["STATUS"].endswith("; services 1 running")


def test_no_ready_when_a_service_cannot_start(notify: NotifyListener, tmp_path: Path) -> None:
    """An auto_start service whose module raises at import: no READY=1, STOPPING=1 naming it,
    exit 1 (so `systemctl start` fails)."""
    text = config_text({"t:broken": "start_broken:main"}, hosts=HOSTS,
                       extra='[services."t:broken"]\nprocess = "t:broken"\nhost = "t:a"\n')
    d = Daemon(tmp_path / "broken", text)
    r = subprocess.run([sys.executable, "-m", "actord", "run", "--config", str(d.config_path)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1, r.stderr
    seen = notify.drain()
    assert not [m for m in seen if is_ready(m)], seen
    [stopping] = [m for m in seen if m.fields.get("STOPPING") == "1"]
    assert stopping.fields["STATUS"] == (
        "stopping: service t:broken could not start: RuntimeError: broken at import")


def test_watchdog_pings_while_running(notify: NotifyListener, make_daemon: DaemonFactory) -> None:
    """WATCHDOG=1 arrives every WATCHDOG_USEC/2, from the daemon's PID."""
    d = start(make_daemon)
    notify.until(is_ready)
    pings = [notify.until_field("WATCHDOG")[-1] for _ in range(6)]
    assert {p.pid for p in pings} == {d.pid}
    mean_gap = (pings[-1].at - pings[0].at) / (len(pings) - 1)
    assert WATCHDOG_USEC / 2e6 * 0.5 < mean_gap < WATCHDOG_USEC / 1e6 * 5, mean_gap


def test_no_pings_while_the_daemon_is_stalled(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """A daemon that cannot run its loop (SIGSTOP) sends no ping; pings resume after."""
    d = start(make_daemon)
    notify.until(is_ready)
    notify.until_field("WATCHDOG")
    os.kill(d.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: process_state(d.pid) == "T", what="daemon stopped")
        notify.drain()
        with pytest.raises(TimeoutError):  # five ping intervals without a ping
            notify.until_field("WATCHDOG", timeout=WATCHDOG_USEC / 1e6 * 2.5)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert notify.until_field("WATCHDOG")[-1].pid == d.pid


def test_status_follows_the_node(notify: NotifyListener, make_daemon: DaemonFactory) -> None:
    """A heartbeat sends STATUS= when the summary changed: here, three more processes."""
    d = start(make_daemon)
    notify.until(is_ready)
    for _ in range(3):
        d.call("spawn", id="t:obedient", host="t:a")
    notify.until(lambda m: m.fields.get("STATUS", "").startswith(
        "running: 1 hosts, 1 workers, 5 processes;"))


def test_workers_do_not_inherit_systemd_variables(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """Only the daemon talks to systemd: workers (and actor code) see no NOTIFY_SOCKET."""
    d = start(make_daemon)
    got = d.exec("t:environ", "t:a", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    assert got == {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None, "WATCHDOG_PID": None}


# -- reload ---------------------------------------------------------------------------------------


def reload_datagrams(notify: NotifyListener) -> tuple[Datagram, Datagram]:
    """The next RELOADING=1 and the READY=1 that follows it."""
    reloading = notify.until_field("RELOADING")[-1]
    ready = notify.until(is_ready)[-1]
    return reloading, ready


def test_reload_command_sends_reloading_then_ready(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """`actord reload`: RELOADING=1 with MONOTONIC_USEC, then READY=1 with a fresh STATUS."""
    d = start(make_daemon)
    notify.until(is_ready)
    assert d.cli("reload").returncode == 0
    reloading, ready = reload_datagrams(notify)
    assert reloading.pid == ready.pid == d.pid
    assert abs(int(reloading.fields["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < 60
    assert ready.fields["STATUS"].startswith("running: 1 hosts")


def test_sighup_sends_reloading_then_ready(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """SIGHUP (the unit's ExecReload): RELOADING=1, then READY=1."""
    d = start(make_daemon)
    notify.until(is_ready)
    os.kill(d.pid, signal.SIGHUP)
    reload_datagrams(notify)


def test_refused_reload_is_shown_in_status(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """A refused reload still ends with READY=1; STATUS= names it until a reload succeeds."""
    d = start(make_daemon)
    notify.until(is_ready)
    good = d.config_path.read_text()
    d.config_path.write_text(good + '\n[hosts."t:bad"]\nworkers = 0\n')
    assert d.cli("reload").returncode == 1
    _, ready = reload_datagrams(notify)
    assert "reload refused" in ready.fields["STATUS"]
    assert 'hosts."t:bad".workers' in ready.fields["STATUS"]
    d.config_path.write_text(good)
    assert d.cli("reload").returncode == 0
    _, ready = reload_datagrams(notify)
    assert "reload" not in ready.fields["STATUS"]


# -- stop -----------------------------------------------------------------------------------------


def test_sigterm_sends_stopping_and_ends_the_pings(
    notify: NotifyListener, make_daemon: DaemonFactory
) -> None:
    """SIGTERM: STOPPING=1 from the daemon, no WATCHDOG=1 after it, exit 0."""
    d = start(make_daemon)
    notify.until(is_ready)
    notify.until_field("WATCHDOG")
    assert d.stop() == 0
    after = notify.until_field("STOPPING")
    assert after[-1].pid == d.pid
    rest = notify.drain()
    assert not [m for m in rest if "WATCHDOG" in m.fields], rest
    assert [m.fields["STATUS"] for m in rest][-1] == "stopping: workers"


def test_no_watchdog_for_another_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     make_daemon: DaemonFactory) -> None:
    """WATCHDOG_PID naming another process: no pings; STATUS= still works (abstract socket)."""
    listener = NotifyListener(f"@actord-test-{uuid.uuid4().hex}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
        monkeypatch.setenv("WATCHDOG_PID", "1")
        d = start(make_daemon)
        seen = listener.until(is_ready)
        d.call("spawn", id="t:obedient", host="t:a")
        # a heartbeat ran (it sent the new STATUS) without a ping
        seen += listener.until(lambda m: "3 processes" in m.fields.get("STATUS", ""))
        assert d.stop() == 0
        seen += listener.drain()
        assert not [m for m in seen if "WATCHDOG" in m.fields], seen
        assert any(m.fields.get("STOPPING") == "1" for m in seen)
    finally:
        listener.close()


def test_watchdog_settings_from_the_environment() -> None:
    """WATCHDOG_USEC/2 in seconds; off when unset, zero, malformed or for another PID."""
    cases = [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ]
    for env, expected in cases:
        assert watchdog_interval(dict(env), 42) == expected, env
    assert notify_address("@name") == "\0name"
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("vsock:2:1") is None
    assert notify_address(None) is None


# -- the unit file --------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (comments skipped; a key may repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_file_settings() -> None:
    """Type=notify, only the main PID is heard, reload is SIGHUP, the daemon runs its own stop."""
    unit = unit_settings(UNIT.read_text())
    assert unit["Type"] == ["notify"]  # systemd 252: no notify-reload
    assert unit["NotifyAccess"] == ["main"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillMode"] == ["mixed"]  # SIGTERM to the daemon only, SIGKILL to leftovers
    assert unit["WatchdogSec"] and unit["Restart"] == ["on-failure"]
    assert unit["ExecStart"][0].endswith("actord run --config /etc/actord/actord.toml")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``systemd-analyze ARGS``, output captured."""
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def installable_unit(tmp_path: Path) -> Path:
    """The unit, with ExecStart pointing at this venv's ``actord`` (so it exists)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine)")
    probe = tmp_path / "probe.service"
    probe.write_text("[Service]\nType=notify\nExecStart=/bin/true\n")
    out = analyze("verify", str(probe))
    if out.returncode != 0:
        pytest.skip(f"systemd-analyze cannot verify units here: {out.stderr.strip()}")
    actord = Path(sys.executable).parent / "actord"
    assert actord.exists(), f"{actord}: the console script is not installed"
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={actord}", UNIT.read_text())
    unit = tmp_path / "actord.service"
    unit.write_text(text)
    return unit


def test_unit_file_verifies(installable_unit: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning."""
    out = analyze("verify", str(installable_unit))
    assert out.returncode == 0, out.stderr
    assert "actord.service" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_unit_file_is_hardened(installable_unit: Path) -> None:
    """`systemd-analyze security` rates the unit's exposure low (below 3.0 of 10)."""
    out = analyze("security", "--offline=true", str(installable_unit))
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout + out.stderr)
    if m is None:
        pytest.skip(f"systemd-analyze security --offline is unavailable: {out.stderr.strip()}")
    assert float(m[1]) < 3.0, out.stdout
