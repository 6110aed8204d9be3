"""The ``actord`` command line (SPEC section 9), built with click.

Exit codes: 0 success, 1 the operation failed, 2 usage error (bad input rejected before the
daemon is asked), 3 no daemon answers. Every failure is one line ``actord: ...`` on stderr;
no command prints a traceback. ``--json`` prints machine-readable output.

The group and how a command reaches the daemon are in :mod:`~actord.cli.app`; values in and
out in :mod:`~actord.cli.values` and :mod:`~actord.cli.output`; the commands, by what they act
on, in :mod:`~actord.cli.processes`, :mod:`~actord.cli.services`, :mod:`~actord.cli.logs`,
:mod:`~actord.cli.daemon`, :mod:`~actord.cli.info`, :mod:`~actord.cli.top` and
:mod:`~actord.cli.trace` (importing each registers its commands on ``main``).
"""

from actord.cli import daemon, info, logs, processes, services, top, trace  # noqa: F401 - each registers its commands
from actord.cli.app import main

__all__ = ["main"]
