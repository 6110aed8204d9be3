"""Old path of :mod:`actord.configfile` (the config's machine checks are I/O, not core).

Kept only until ``cli.py`` and ``daemon.py`` import ``actord.configfile``; then delete this.
"""

from actord.configfile import check, module_exists

__all__ = ["check", "module_exists"]
