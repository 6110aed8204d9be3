"""Config: the TOML file of SPEC section 8 turned into frozen, validated objects.

Invariant: a ``Config`` that exists is valid, so the rest of actord trusts it: ids are
``namespace:name``, every reference (process, host, depends_on, scope, policy) names something
declared, depends_on is acyclic, durations are float seconds, paths are absolute. Anything else
is refused with one ``ConfigError`` whose message is one line ``"<file>: <key path>: <problem>"``.
Pure: no I/O (the file is read, and checked against the machine, by :mod:`actord.configfile`);
only defaults read the environment. Defaults the file does not show: a missing
``[daemon] socket`` is :func:`default_socket_path`; relative paths are relative to the config
file's directory; ``workers`` is the CPU count (at most 256); ``[security] mode`` is
``"permissive"`` when the table or the key is absent; ``[daemon] metrics`` is off when absent,
and its host defaults to ``127.0.0.1`` (``":9464"``); without ``[cluster]``, ``cluster`` is None
(a single node: no NATS); its ``name`` defaults to ``"actord"``, ``node_timeout`` to 3 s.

Layout (imports go one way: config -> config_build -> config_model): this module is the API
(:func:`parse`, :func:`service_start_order`) and re-exports the objects, so
``from actord.core.config import X`` is the one import for the rest of actord;
``config_model`` defines the frozen objects, their defaults and :func:`default_socket_path`;
``config_build`` checks a parsed document (the msgspec shapes of ``config_shapes``, then
cross-checks, with the value checks of ``config_values``) and builds them.
"""

from __future__ import annotations

import re
import tomllib

from actord.core.config_build import build, dependency_levels
from actord.core.config_model import (
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_FRAME,
    DEFAULT_MODE,
    DEFAULT_RESTART,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_TIMEOUT,
    MAX_WORKERS,
    Actor,
    Backoff,
    Client,
    ClusterConfig,
    ClusterTLS,
    Condition,
    Config,
    DaemonConfig,
    Effect,
    HostConfig,
    Intensity,
    Mode,
    Op,
    Policy,
    ProcessConfig,
    Restart,
    Scope,
    SecurityConfig,
    ServiceConfig,
    default_socket_path,
)
from actord.errors import ConfigError

__all__ = [
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MODE",
    "DEFAULT_RESTART",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_WORKERS",
    "Actor",
    "Backoff",
    "Client",
    "ClusterConfig",
    "ClusterTLS",
    "Condition",
    "Config",
    "DaemonConfig",
    "Effect",
    "HostConfig",
    "Intensity",
    "Mode",
    "Op",
    "Policy",
    "ProcessConfig",
    "Restart",
    "Scope",
    "SecurityConfig",
    "ServiceConfig",
    "default_socket_path",
    "parse",
    "service_start_order",
]


def parse(text: str, path: str) -> Config:
    """Validate the TOML ``text`` of the file ``path`` (used in messages and for relative paths)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # "Invalid value (at line 3, column 9)"
        m = re.match(r"^(.*?)\s*\((?:at )?(line \d+, column \d+|end of document)\)$", str(e),
                     re.DOTALL)
        what, where = (m[1], m[2]) if m else (str(e), "?")
        # "Cannot declare ('hosts', 't:a') twice": the key path as TOML spells it
        what = re.sub(r"\(('[^']*'(?:, '[^']*')*)\)", _toml_key, what)
        raise ConfigError(" ".join(f"{path}: {where}: invalid TOML: {what}".splitlines())) from None
    return build(doc, path)


def _toml_key(m: re.Match[str]) -> str:
    parts = re.findall(r"'([^']*)'", m[1])
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in parts)


def service_start_order(config: Config) -> list[list[str]]:
    """Services in dependency levels, in file order within a level; stop in reverse."""
    levels, stuck = dependency_levels({n: s.depends_on for n, s in config.services.items()})
    if stuck:  # only a Config built by hand, not by parse, can get here
        raise ValueError(f"dependency cycle among {stuck}")
    return levels

