"""What the baselines share: length-prefixed msgpack frames on uvloop, and peer processes.

A frame is a 4-byte big-endian length followed by one msgpack value, the list
``[dest, from, topic, payload_bin]`` where ``payload_bin`` is the user value pre-encoded as a
msgpack ``bin`` (as actord does). Peers are fresh interpreters (``python SCRIPT --role R
--fd N``), never forks of a process with a loop, so they start like actord's workers do.

Peer roles (run as ``python baseline_common.py --role ROLE --fd N [--fd M]``):

    echo    answer every frame with a "pong" frame back to its sender
    relay   two connections; decode each frame's destination, forward the raw frame there
            (one write per destination per read: the batching a router can do)
    sink    decode every frame and its payload; on topic "end" answer "done" with the count

Used by the other scripts in this folder; not a benchmark itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

HEADER = struct.Struct(">I")
_unpack_size = HEADER.unpack_from
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

#: the frames of one read: ``(raw, body)`` per frame, both views of the bytes read
Frames = list[tuple[memoryview, memoryview]]

#: PID-shaped addresses, so frames are as long as actord's
PID_A = "{bench:a|0x00001}"
PID_B = "{bench:b|0x00002}"


def frame(dest: str, from_: str, topic: str, value: Any) -> bytes:
    """One length-prefixed frame carrying ``value`` pre-encoded as bin."""
    body = _pack([dest, from_, topic, _pack(value)])
    return HEADER.pack(len(body)) + body


def decode(body: bytes | memoryview) -> list[Any]:
    """A frame body back to ``[dest, from, topic, payload_bin]``."""
    return msgpack.unpackb(body, raw=False)  # type: ignore[no-any-return]


def value(payload: bytes) -> Any:
    """A payload back to the user value."""
    return msgpack.unpackb(payload, raw=False)


class FrameConn(asyncio.Protocol):
    """Splits a byte stream into frames; calls ``on_frames(conn, [(raw, body), ...])`` per read.

    ``raw`` is the whole frame (header included, what a relay forwards), ``body`` the msgpack.
    """

    def __init__(self, on_frames: Callable[[FrameConn, Frames], None]) -> None:
        self.on_frames = on_frames
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes | memoryview] = []  # written before the transport existed
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.pending:
            transport.write(b"".join(self.pending))  # type: ignore[attr-defined]
            self.pending.clear()

    def data_received(self, data: bytes) -> None:
        # Frames are memoryview slices of the bytes read: no copy per frame. A partial frame
        # at the end is kept and joined with the next read.
        if self.buf:
            self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        view, size, pos, frames = memoryview(data), len(data), 0, []
        while size - pos >= 4:
            end = pos + 4 + _unpack_size(data, pos)[0]
            if end > size:
                break
            frames.append((view[pos:end], view[pos + 4 : end]))
            pos = end
        if pos < size:
            self.buf += view[pos:]
        if frames:
            self.on_frames(self, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)


async def connect(sock: socket.socket, on_frames: Callable[..., None]) -> FrameConn:
    """Wrap a connected socket in a :class:`FrameConn` on the running loop."""
    conn = FrameConn(on_frames)
    await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, sock)
    return conn


# -- peer roles --------------------------------------------------------------------------------
async def run_echo(fd: int) -> None:
    """Echo: every frame back to its sender, decoded and re-encoded (as an actor would)."""

    def on_frames(conn: FrameConn, frames: Frames) -> None:
        out = []
        for _, body in frames:
            dest, from_, _topic, payload = decode(body)
            out.append(frame(from_, dest, "pong", value(payload)))
        conn.write(b"".join(out))

    conn = await connect(peer_socket(fd), on_frames)
    await conn.lost


async def run_relay(fd_a: int, fd_b: int) -> None:
    """Relay: route each frame by its decoded destination, forwarding the raw bytes."""
    routes: dict[str, FrameConn] = {}

    def on_frames(conn: FrameConn, frames: Frames) -> None:
        out: dict[FrameConn, list[memoryview]] = {}
        for raw, body in frames:
            target = routes.get(decode(body)[0])
            if target is None:
                continue  # a dead letter
            chunks = out.get(target)
            if chunks is None:
                out[target] = [raw]
            else:
                chunks.append(raw)
        for target, chunks in out.items():
            target.write(b"".join(chunks))

    # routes exist before either socket is read: no frame can arrive to an empty table
    a, b = FrameConn(on_frames), FrameConn(on_frames)
    routes.update({PID_A: a, PID_B: b})
    loop = asyncio.get_running_loop()
    for conn, fd in ((a, fd_a), (b, fd_b)):
        await loop.connect_accepted_socket(lambda c=conn: c, peer_socket(fd))  # type: ignore[misc]
    await asyncio.wait([a.lost, b.lost], return_when=asyncio.FIRST_COMPLETED)
    for conn in (a, b):
        assert conn.transport is not None
        conn.transport.close()


async def run_sink(fd: int) -> None:
    """Sink: decode every frame and payload; answer "end" with "done" and the count."""
    count = 0

    def on_frames(conn: FrameConn, frames: Frames) -> None:
        nonlocal count
        for _, body in frames:
            dest, from_, topic, payload = decode(body)
            value(payload)
            if topic == "end":
                conn.write(frame(from_, dest, "done", count))
                count = 0
            else:
                count += 1

    conn = await connect(peer_socket(fd), on_frames)
    await conn.lost


ROLES: dict[str, Callable[..., Any]] = {"echo": run_echo, "relay": run_relay, "sink": run_sink}


class Peers:
    """Peer OS processes of one baseline run, each a fresh ``python SCRIPT --role ROLE``."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, *socks: socket.socket) -> None:
        """Start peer ``role`` with ``socks`` inherited (and closed in this process)."""
        fds = [s.fileno() for s in socks]
        args = [sys.executable, str(Path(__file__).resolve()), "--role", role]
        for fd in fds:
            args += ["--fd", str(fd)]
        self.procs.append(subprocess.Popen(args, pass_fds=fds, stdin=subprocess.DEVNULL))
        for s in socks:
            s.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Wait for every peer to exit (they exit on EOF); kill those that do not."""
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def peer_socket(fd: int) -> socket.socket:
    """The inherited socket of a peer process."""
    return socket.socket(fileno=fd)


def socketpair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of unix stream sockets."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process), from /proc/PID/status VmRSS."""
    path = f"/proc/{pid or os.getpid()}/status"
    with open(path) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in {path}")


def main() -> None:
    """Run one peer role (this file is the peers' script)."""
    import argparse

    import uvloop

    parser = argparse.ArgumentParser(description="a baseline peer process")
    parser.add_argument("--role", choices=sorted(ROLES), required=True)
    parser.add_argument("--fd", type=int, action="append", required=True)
    args = parser.parse_args()
    uvloop.run(ROLES[args.role](*args.fd))


if __name__ == "__main__":
    main()
