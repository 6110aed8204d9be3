"""Test helpers: a real daemon in a temporary directory, driven over its control socket.

Used by actord's own tests and available to users testing their actors. ``Daemon.start``
waits (bounded) until every worker has said HELLO; ``stop`` sends SIGTERM and waits for
exit. Nothing here mocks actord: it runs ``python -m actord run`` as a child process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from actord import proctable
from actord.client import Client, ClientError, CommandError, DaemonUnreachableError


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (returned) or raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (from /proc, zombies included)."""
    return proctable.descendants(pid)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    return proctable.is_alive(pid)


class Daemon:
    """A daemon under test: config written to ``workdir``, logs in ``workdir/daemon.log``."""

    def __init__(self, workdir: Path, config_text: str) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.workdir / "actord.sock")
        self.config_path = self.workdir / "actord.toml"
        self.config_path.write_text(config_text.replace("@SOCKET@", self.socket))
        self.log_path = self.workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> Daemon:
        """Start the daemon and wait until every worker is connected."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actord", "run", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        wait_for(self._ready, timeout, what=f"daemon ready (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log()}")
        try:
            st = self.call("status")
        except (DaemonUnreachableError, OSError):
            return False
        return bool(st.get("ready")) and all(w["up"] for h in st["hosts"] for w in h["workers"])

    def _drop_client(self) -> None:
        """Forget the cached control connection (its daemon is going away)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        self._drop_client()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return code

    @property
    def running(self) -> bool:
        """True while the daemon's OS process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self, *pids: str) -> None:
        """Terminate these processes and wait for each one's end (``actord kill``). How a
        test ends the processes it leaves that ignore CANCEL: ``stop`` then has no
        ``shutdown_timeout`` to wait out for them."""
        for pid in pids:
            self.call("kill", dest=pid)

    def kill9(self) -> None:
        """SIGKILL the daemon itself (a later ``start`` runs it again, as a new run)."""
        self._drop_client()
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """Everything the daemon wrote so far."""
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[tuple[str, list[str]]]:
        """The log as records: each record's first line and its continuation lines (its
        traceback), these without their ``"  | "`` mark."""
        mark = "  | "  # actord.daemon.CONTINUATION
        out: list[tuple[str, list[str]]] = []
        for line in self.log().splitlines():
            if line.startswith(mark) and out:
                out[-1][1].append(line[len(mark):])
            else:
                out.append((line, []))
        return out

    # -- commands --------------------------------------------------------------------------------
    def call(self, command: str, wait: float | None = 30.0, **args: Any) -> Any:
        """One control command; raises ``CommandError`` with the daemon's error kind."""
        if self._client is None:
            self._client = Client(self.socket, timeout=30.0)
        try:
            return self._client.call(command, wait, **args)
        except (DaemonUnreachableError, ClientError, OSError):
            self._drop_client()
            raise
        except CommandError:
            if self._client.dropped:  # a request refused as a whole: the next call reconnects
                self._drop_client()
            raise

    def exec(self, id: str, host: str, *args: Any, timeout: float = 30.0) -> Any:
        """Run a process to completion; its value, or ``AssertionError`` with its error."""
        result = self.call("exec", None, id=id, host=host, args=list(args), timeout=timeout)
        if "error" in result:
            raise AssertionError(f"{id} failed: {result['error']}\n--- daemon log:\n{self.log()}")
        return result["value"]

    def cli(self, *args: str | bytes, timeout: float = 60.0, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``actord ARGS`` against this daemon; stdout/stderr captured as text.

        An argument given as bytes reaches the CLI as those exact bytes (e.g. invalid UTF-8);
        ``input`` is written to its stdin; ``env`` adds environment variables.
        """
        env = {**os.environ, "ACTORD_SOCKET": self.socket, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "actord", *args], env=env, capture_output=True, text=True,
            timeout=timeout, check=False, input=input, errors="replace",
        )

    def workers(self) -> list[dict[str, Any]]:
        """Every worker slot of every host, from ``status``."""
        return [
            {**w, "host": h["name"]} for h in self.call("status")["hosts"] for w in h["workers"]
        ]

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def stop_all(daemons: Iterable[Daemon]) -> None:
    """Stop every daemon still running, each even if stopping an earlier one failed (a
    daemon that does not stop in time is SIGKILLed by ``stop``); then raise the first
    failure, if any."""
    errors: list[BaseException] = []
    for d in daemons:
        if d.running:
            try:
                d.stop()
            except Exception as e:  # the others are stopped all the same
                errors.append(e)
    if errors:
        raise errors[0]


__all__ = ["CommandError", "Daemon", "alive", "descendants", "stop_all", "wait_for"]
