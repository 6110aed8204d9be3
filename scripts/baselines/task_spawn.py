"""Baseline: ``asyncio.create_task`` + ``await`` of ``n`` trivial tasks in one process.

Creates all ``n`` tasks at once (each returns at once), then awaits every one. The result
is tasks per second on uvloop, with the garbage collector as Python ships it. actord's
spawn-and-EXIT rate (scenario d) is compared with it.

Run: python scripts/baselines/task_spawn.py [--n 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

UNIT = "proc/s"


async def _child() -> None:
    return None


async def measure(n: int) -> float:
    """Tasks per second: create ``n`` tasks, then await each."""
    start = time.perf_counter()
    tasks = [asyncio.create_task(_child()) for _ in range(n)]
    for task in tasks:
        await task
    return n / (time.perf_counter() - start)


def run(n: int = 10_000) -> float:
    """Tasks per second (fresh uvloop loop)."""
    return uvloop.run(measure(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = sorted(run(args.n) for _ in range(args.repeat))
    print(f"create_task + await: median {results[len(results) // 2]:,.0f} tasks/s "
          f"(min {results[0]:,.0f}, max {results[-1]:,.0f}; {args.n} tasks x {args.repeat})")


if __name__ == "__main__":
    main()
