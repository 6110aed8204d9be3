"""A daemon running a given checkout's actord, and the proof that it does (``bench.py --against``).

:class:`TreeDaemon` starts ``python -m actord run`` with the same interpreter as this script
but with the checkout ``tree`` first on ``PYTHONPATH`` and as its working directory (``-m``
puts the working directory first on ``sys.path``), so the daemon and the workers it forks and
execs (they inherit both) import ``tree``'s ``actord``, not the one installed in the venv. The
launcher prints the daemon's ``actord.__file__`` into the daemon log before it runs the daemon,
and :meth:`TreeDaemon.verify` checks that line and the ``actord.__file__`` a worker reports
(driver ``bench:where``); either outside ``tree`` raises :class:`WrongTree`.

Only the daemon and its workers run ``tree``'s code; the client that drives them over the
control socket is this checkout's ``actord.testing``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from actord.testing import Daemon, wait_for

#: the daemon log's first line: where the daemon imported actord from
MARK = "bench: daemon actord from "

# ``python -m actord`` with one line printed first (runpy is what ``-m`` uses)
LAUNCHER = (
    "import runpy, sys; import actord; "
    f"print({MARK!r} + actord.__file__, flush=True); "
    "runpy.run_module('actord', run_name='__main__', alter_sys=True)"
)


class WrongTree(RuntimeError):
    """The daemon or a worker imported actord from somewhere other than the tree asked for."""


def tree_env(tree: Path) -> dict[str, str]:
    """This environment with ``tree`` first on ``PYTHONPATH``."""
    rest = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(tree) + (os.pathsep + rest if rest else "")}


def inside(path: str, tree: Path) -> bool:
    return Path(path).resolve().is_relative_to(tree.resolve())


def preflight(tree: Path) -> str:
    """Where ``actord`` imports from under :func:`tree_env` (raises unless inside ``tree``)."""
    if not (tree / "actord" / "__init__.py").is_file():
        raise WrongTree(f"{tree} is not a checkout of actord (no actord/__init__.py)")
    r = subprocess.run([sys.executable, "-c", "import actord; print(actord.__file__)"],
                       env=tree_env(tree), cwd=tree, capture_output=True, text=True,
                       timeout=60, check=False)
    if r.returncode != 0:
        raise WrongTree(f"importing actord from {tree} failed: {r.stderr.strip()[-500:]}")
    found = r.stdout.strip()
    if not inside(found, tree):
        raise WrongTree(f"with PYTHONPATH={tree}, actord still imports from {found}")
    return found


class TreeDaemon(Daemon):
    """A :class:`~actord.testing.Daemon` whose daemon and workers run ``tree``'s actord."""

    def __init__(self, workdir: Path, config_text: str, tree: Path) -> None:
        super().__init__(workdir, config_text)
        self.tree = tree.resolve()

    def start(self, timeout: float = 20.0) -> TreeDaemon:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "run", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=tree_env(self.tree), cwd=self.tree,
        )
        wait_for(self._ready, timeout, what=f"daemon ready (log: {self.log_path})")
        return self

    def verify(self, host: str, timeout: float) -> dict[str, Any]:
        """The daemon's and a worker's ``actord.__file__``; raises unless both are in the tree."""
        daemon_file = next((line[len(MARK):] for line in self.log().splitlines()
                            if line.startswith(MARK)), None)
        if daemon_file is None:
            raise WrongTree(f"the daemon log has no {MARK!r} line ({self.log_path})")
        worker = self.exec("bench:where", host, timeout=timeout)
        found = {"daemon": daemon_file, "worker": worker["actord"],
                 "worker_os_pid": worker["os_pid"]}
        for role in ("daemon", "worker"):
            if not inside(found[role], self.tree):
                raise WrongTree(f"the {role} imported actord from {found[role]}, "
                                f"not from {self.tree}")
        return found
