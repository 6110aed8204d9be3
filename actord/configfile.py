"""The config's I/O edge: reading the file, and checking a valid ``Config`` against this machine.

``actord.core.config`` is pure (TOML text in, a ``Config`` or one ``ConfigError`` out); what
needs the file system or the system's databases is here. :func:`load` reads the file and
parses it. ``check(config)`` is what ``actord run`` (and reload's caller) refuses: a
``python_path`` directory that does not exist, a ``socket_group`` that names no group, a
``[cluster]`` credentials or TLS file that cannot be read.
``check(config, strict=True)`` is ``actord check-config``, which also refuses a relative
``[daemon] socket`` (it works, relative to the config file, but the CLI without ``--config``
will not find it) and an entry module found nowhere on ``python_path`` and ``sys.path`` (found
without being imported: no actor code runs). ``run`` accepts those two: code may be deployed
after the daemon starts, and ``start``/``exec`` of a process whose module is missing fail
visibly. Every problem is one ``ConfigError`` line ``"<file>: <key path>: <problem>"``.
"""

from __future__ import annotations

import grp
import importlib.machinery
import os
import sys
import tomllib

from actord.core.config import Config, parse
from actord.core.config_values import key_path
from actord.errors import ConfigError


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate the config file at ``path``; raise ``ConfigError`` if it is unusable."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not UTF-8 text (byte {e.start})") from None
    return parse(text, name)


def check(config: Config, strict: bool = False) -> None:
    """Raise ``ConfigError`` for the first problem (see the module docstring)."""
    daemon = config.daemon
    for i, path in enumerate(daemon.python_path):
        if not os.path.isdir(path):
            _refuse(config, ("daemon", "python_path", i), f"no such directory: {path}")
    if daemon.socket_group is not None:
        try:
            grp.getgrnam(daemon.socket_group)
        except KeyError:
            _refuse(config, ("daemon", "socket_group"), f"unknown group {daemon.socket_group!r}")
    cluster = config.cluster
    if cluster is not None:  # NATS would fail later, and less clearly, on a missing file
        files: list[tuple[tuple[str, ...], str | None]] = [
            (("cluster", "credentials"), cluster.credentials)
        ]
        if cluster.tls is not None:
            files += [(("cluster", "tls", k), getattr(cluster.tls, k))
                      for k in ("ca", "cert", "key")]
        for key, file in files:
            if file is not None and not os.access(file, os.R_OK):
                _refuse(config, key, f"no readable file: {file}")
    if not strict:
        return
    raw = _raw_socket(config.path)
    if raw is not None and not os.path.isabs(raw):
        _refuse(config, ("daemon", "socket"),
                f"relative path {raw!r} (it would be {daemon.socket}): use an absolute path")
    search = [*daemon.python_path, *sys.path]
    for name, process in config.processes.items():
        module = process.entry.partition(":")[0]
        if not module_exists(module, search):
            _refuse(config, ("processes", name, "entry"),
                    f"module {module!r} not found on python_path or sys.path")


def module_exists(module: str, search: list[str]) -> bool:
    """True when ``module`` (dotted) can be found on ``search``, importing nothing."""
    if module in sys.builtin_module_names:
        return True
    path: list[str] | None = search
    name = ""
    for part in module.split("."):
        name = f"{name}.{part}" if name else part
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return False
        path = list(spec.submodule_search_locations or [])
    return True


def _raw_socket(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            value = tomllib.load(f).get("daemon", {}).get("socket")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return value if isinstance(value, str) else None


def _refuse(config: Config, key: tuple[str | int, ...], problem: str) -> None:
    raise ConfigError(" ".join(f"{config.path}: {key_path(key)}: {problem}".splitlines()))


__all__ = ["check", "load", "module_exists"]
