"""Shared fixtures: real daemons in temporary directories (see ``actord.testing``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.testing import Daemon, stop_all, wait_for

ACTORS = Path(__file__).parent / "actors"

#: hosts of the standard test node: one single-worker host and one two-worker host
HOSTS = {"t:a": 1, "t:b": 2}


def config_text(
    processes: dict[str, str],
    hosts: dict[str, int] | None = None,
    extra: str = "",
    shutdown_timeout: str = "5s",
) -> str:
    """A daemon config: ``processes`` maps process id -> ``module:function`` in tests/actors."""
    lines = [
        "[daemon]",
        'socket = "@SOCKET@"',
        f'python_path = ["{ACTORS}"]',
        f'shutdown_timeout = "{shutdown_timeout}"',
    ]
    for name, workers in (hosts or HOSTS).items():
        lines += [f'[hosts."{name}"]', f"workers = {workers}"]
    for pid, entry in processes.items():
        lines += [f'[processes."{pid}"]', f'entry = "{entry}"']
    return "\n".join(lines) + "\n" + extra


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Start daemons for one test; all are stopped (SIGTERM) at teardown."""
    started: list[Daemon] = []

    def factory(processes: dict[str, str], **kw: object) -> Daemon:
        d = Daemon(tmp_path / f"d{len(started)}", config_text(processes, **kw))  # type: ignore[arg-type]
        started.append(d)
        return d.start()

    yield factory
    stop_all(started)


def assert_nothing_left(d: Daemon, left: int = 0) -> None:
    """After a module's last test, whatever order its tests ran in: every test stopped what it
    started, so only ``left`` processes remain (e.g. a config service's), given 5 s to end."""
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: len(d.call("ps")) == left, timeout=5, what="the tests' processes gone")
    rows = d.call("ps")
    assert len(rows) == left, f"processes left behind by this module's tests: {rows}"


def module_daemon(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    processes: dict[str, str],
    left: int | None = None,
    **kw: object,
) -> Iterator[Daemon]:
    """Body of a module-scoped daemon fixture (one daemon shared by a test module); at the
    end, if ``left`` is given, :func:`assert_nothing_left` (``left``), and a clean stop (exit
    code 0)."""
    d = Daemon(tmp_path_factory.mktemp("daemon"), config_text(processes, **kw))  # type: ignore[arg-type]
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        try:
            if left is not None:
                assert_nothing_left(d, left)
        finally:
            assert d.stop() == 0, d.log()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Any]:
    """A real nats-server with JetStream on a free loopback port, for one test (cluster tests;
    imported here, not at the top: ``tests.cluster_support`` builds on this module)."""
    from tests.cluster_support import NatsServer

    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def remote_host(request: pytest.FixtureRequest) -> bool:
    """True when a parameter of the test (a host, or a list of hosts) names a host of another
    node (``n2@t:a``)."""
    callspec = getattr(request.node, "callspec", None)
    values = list(callspec.params.values()) if callspec is not None else []
    hosts = [h for v in values for h in (v if isinstance(v, list) else [v])]
    return any(isinstance(h, str) and "@" in h for h in hosts)


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Daemon:
    """The daemon a placement-parametrised test (SPEC 3-6) runs its probe on: n1 of the
    module's ``cluster`` (started on first use) when ``host`` is another node's, else the
    module's ``single`` daemon (a module that defines its own ``daemon`` overrides this)."""
    if remote_host(request):
        return request.getfixturevalue("cluster")[0]  # type: ignore[no-any-return]
    return request.getfixturevalue("single")  # type: ignore[no-any-return]


@pytest.fixture
def target(request: pytest.FixtureRequest, daemon: Daemon) -> Daemon:
    """The daemon that holds the test's ``host``: n2 of the cluster for another node's host,
    else the probe's own daemon."""
    if remote_host(request):
        return request.getfixturevalue("cluster")[1]  # type: ignore[no-any-return]
    return daemon
