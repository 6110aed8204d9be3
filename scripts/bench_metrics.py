"""Scrape time of the metrics endpoint with many processes (README "Read metrics").

Starts a daemon with ``[daemon] metrics`` on a free loopback port, two hosts of two workers,
fills them with ``--processes`` idle processes (each with one unread message, so every
mailbox is non-empty), then times ``--scrapes`` sequential ``GET /metrics`` from here (HTTP
included) and prints the median, p90 and minimum. A benchmark: it asserts nothing.

The daemon runs the actord that the running interpreter imports, so another commit is
measured by running this file with that checkout's venv (``/old/.venv/bin/python
scripts/bench_metrics.py``): it uses only ``actord.testing.Daemon`` and the public API.

Run:  .venv/bin/python scripts/bench_metrics.py [--processes 10000] [--scrapes 30]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from actord.testing import Daemon

ACTORS = Path(__file__).resolve().parent / "bench_actors"
HOSTS = ("m:a", "m:b")


def config(port: int) -> str:
    """The bench daemon's config: metrics on ``port``, two hosts of two workers."""
    lines = ["[daemon]", 'socket = "@SOCKET@"', f'python_path = ["{ACTORS}"]',
             'shutdown_timeout = "10s"', f'metrics = "127.0.0.1:{port}"']
    for host in HOSTS:
        lines += [f'[hosts."{host}"]', "workers = 2"]
    for name, entry in (("m:deaf", "metrics_actors:deaf"), ("m:fill", "metrics_actors:fill")):
        lines += [f'[processes."{name}"]', f'entry = "{entry}"']
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the arguments, run, print one line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, default=10000, help="idle processes")
    parser.add_argument("--scrapes", type=int, default=30, help="timed scrapes")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp), config(port)).start()
        try:
            for host in HOSTS:
                d.exec("m:fill", host, host, args.processes // len(HOSTS), timeout=600)
            url = f"http://127.0.0.1:{port}/metrics"
            times = []
            for _ in range(args.scrapes):
                start = time.perf_counter()
                with urllib.request.urlopen(url, timeout=30) as r:
                    body = r.read()
                times.append((time.perf_counter() - start) * 1e3)
        finally:
            d.stop(timeout=120)
    times.sort()
    print(f"{args.processes} processes, {args.scrapes} scrapes: median "
          f"{statistics.median(times):.2f} ms, p90 {times[int(len(times) * 0.9)]:.2f} ms, "
          f"min {times[0]:.2f} ms, body {len(body)} bytes")


if __name__ == "__main__":
    main()
