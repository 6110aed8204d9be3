"""Entry loading: from ``module:function`` to the coroutine function a process runs.

Responsibility: import a process's entry (cached per entry while a fresh lookup would give the
same function), and for an upgrade re-import a module whose file changed on disk. Invariant:
an upgrade re-imports a module only when its file's stamp (mtime, size) changed since it was
first seen, so an unchanged module keeps its state.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from actord.errors import InvalidError, NotFoundError
from actord.worker.state import WorkerState


class Entries(WorkerState):
    """Entry loading for ``Runtime``."""

    def load_entry(self, entry: str, *, reload: bool) -> Callable[..., Any]:
        """Import ``module:function``; with ``reload``, re-import a module changed on disk."""
        if not reload:
            # Every spawn loads its entry: reuse the last answer while it is still what a
            # fresh lookup would give (same module object imported, attribute not rebound,
            # which also covers a reload by an upgrade), skipping the coroutine check.
            cached = self._entries.get(entry)
            if cached is not None:
                module_name, attr, cached_module, cached_fn = cached
                if (sys.modules.get(module_name) is cached_module
                        and getattr(cached_module, attr, None) is cached_fn):
                    return cached_fn
        module_name, _, attr = entry.partition(":")
        module: ModuleType | None = sys.modules.get(module_name)
        if module is None:
            importlib.invalidate_caches()
            module = importlib.import_module(module_name)
            self._stamp_new_modules()
        elif reload:
            # A module with no stamp was imported outside load_entry (lazily, by actor code)
            # and is taken as current: only a change seen since a stamp triggers a re-import.
            stamp = self._module_stamp.setdefault(module_name, _stamp(module))
            if _stamp(module) != stamp:
                module = importlib.reload(module)
                self._module_stamp[module_name] = _stamp(module)
        fn = getattr(module, attr, None)
        if fn is None:
            raise NotFoundError(f"entry {entry!r}: module has no {attr!r}")
        if not asyncio.iscoroutinefunction(fn):
            raise InvalidError(f"entry {entry!r} is not an async function")
        self._entries[entry] = (module_name, attr, module, fn)
        return fn

    def _stamp_new_modules(self) -> None:
        """Remember the on-disk stamp of every module imported so far (an entry's imports
        included), so upgrade re-imports a module only when its file changed since."""
        stamps = self._module_stamp
        for name, module in list(sys.modules.items()):
            if name not in stamps and module is not None:
                stamps[name] = _stamp(module)


def _stamp(module: ModuleType) -> tuple[int, int]:
    path = getattr(module, "__file__", None)
    if not path:
        return (0, 0)
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)

