"""What the peer scripts share: their sizes, a private run (temp dir, no leftovers), the CLI.

Each peer script (``ray_peer.py``, ``thespian_peer.py``) measures another Python actor
library on the workloads of actord's scenarios (a) and (b), between two actors in different
OS processes:

    pingpong  actor A sends to actor B and waits for its reply, ``rounds`` times after
              ``warmup``; the result is the mean round trip (total time / rounds), in us
    stream    actor A fires ``stream`` messages at actor B, which counts them and answers
              when the last one is in; the result is messages per second, as seen by A

A peer run starts its library once (``run(sizes, repeat, workloads)``), takes ``repeat``
samples of each workload and stops it again. Everything it starts lives in a private
temporary directory (also ``TMPDIR`` for the processes it starts) that is removed afterwards,
and carries a marker in its environment: processes still carrying it when the run is over
are killed (and counted in the result as ``leftovers_killed``).

Used by the peer scripts and by ``scripts/bench.py``; not a benchmark itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: environment variable marking every process of one peer run (its value is unique per run)
MARKER_ENV = "ACTORD_PEER_RUN"

#: the workloads and their units
WORKLOADS = {"pingpong": "us", "stream": "msg/s"}


@dataclasses.dataclass(frozen=True)
class PeerSizes:
    """How much work one sample of each workload does."""

    rounds: int = 1000  # pingpong: timed round trips
    warmup: int = 100  # pingpong: round trips before the clock starts (once per run)
    stream: int = 5000  # stream: messages
    stream_warmup: int = 500  # stream: messages of an untimed stream first (once per run)


DEFAULT = PeerSizes()


def marked_pids(marker: str) -> list[int]:
    """Pids of the live processes whose environment carries ``MARKER_ENV=marker``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:  # gone, a zombie, or not ours to read
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


def reap(marker: str, grace: float = 5.0, exclude: tuple[int, ...] = ()) -> int:
    """Wait up to ``grace`` s for the marked processes to exit; kill the rest. How many killed."""
    deadline = time.monotonic() + grace
    while True:
        left = [p for p in marked_pids(marker) if p not in exclude]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(left)


@dataclasses.dataclass
class PrivateRun:
    """One peer run's temporary directory, marker, and (afterwards) leftovers killed."""

    tmp: Path
    marker: str
    leftovers_killed: int = 0


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # so the run's finally blocks stop the library


def leftover_dirs(marker: str) -> list[Path]:
    """The private temp dirs of the run ``marker`` still there (its script was killed)."""
    return sorted(Path(tempfile.gettempdir()).glob(f"*-{marker}-*"))


@contextlib.contextmanager
def private_run(prefix: str) -> Iterator[PrivateRun]:
    """A temp dir (``TMPDIR`` inside) and a marker; afterwards no process and no file is left.

    The marker is ``MARKER_ENV`` as this process inherited it (``scripts/bench.py`` sets it:
    16 hex digits), or a fresh one; the temp dir is ``PREFIX<marker>-XXXXXXXX`` in the usual
    temp dir (keep PREFIX short: Ray's socket paths in it must stay under 108 bytes).
    SIGTERM is turned into ``SystemExit`` so that the library is stopped.
    """
    marker = os.environ.setdefault(MARKER_ENV, uuid.uuid4().hex[:16])
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{marker}-"))
    old_tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp)
    old_term = signal.signal(signal.SIGTERM, _terminate)
    run = PrivateRun(tmp, marker)
    try:
        yield run
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if old_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmpdir
        run.leftovers_killed = reap(marker, exclude=(os.getpid(),))
        shutil.rmtree(tmp, ignore_errors=True)


def result(peer: str, version: str, sizes: PeerSizes, repeat: int, startup_s: float,
           samples: dict[str, list[float]], run: PrivateRun) -> dict[str, Any]:
    """The result dict of one peer run (what ``--json`` prints)."""
    return {"peer": peer, "version": version, "sizes": dataclasses.asdict(sizes),
            "repeat": repeat, "startup_s": startup_s, "samples": samples,
            "units": {k: WORKLOADS[k] for k in samples},
            "leftovers_killed": run.leftovers_killed}


def main(doc: str, run: Callable[[PeerSizes, int, tuple[str, ...]], dict[str, Any]]) -> None:
    """The command line of a peer script: its numbers as text, or as one JSON line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT.rounds, help="round trips")
    parser.add_argument("--warmup", type=int, default=DEFAULT.warmup,
                        help="round trips before the clock starts")
    parser.add_argument("--stream", type=int, default=DEFAULT.stream, help="stream messages")
    parser.add_argument("--stream-warmup", type=int, default=DEFAULT.stream_warmup,
                        help="messages of an untimed stream first")
    parser.add_argument("--repeat", type=int, default=3, help="samples of each workload")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated, of: " + ", ".join(WORKLOADS))
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args()
    workloads = tuple(w for w in args.workloads.split(",") if w)
    if not workloads or not set(workloads) <= set(WORKLOADS):
        parser.error(f"--workloads takes some of {', '.join(WORKLOADS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sizes = PeerSizes(args.rounds, args.warmup, args.stream, args.stream_warmup)
    out = run(sizes, args.repeat, workloads)
    if args.json:
        print(json.dumps(out), flush=True)
        return
    for workload, values in out["samples"].items():
        unit = WORKLOADS[workload]
        n = sizes.rounds if workload == "pingpong" else sizes.stream
        print(f"{out['peer']} {out['version']} {workload}: median "
              f"{statistics.median(values):,.1f} {unit} (min {min(values):,.1f}, "
              f"max {max(values):,.1f}; {n} x {len(values)}; startup {out['startup_s']:.1f} s)")
    if out["leftovers_killed"]:
        print(f"killed {out['leftovers_killed']} process(es) left over after the run")
