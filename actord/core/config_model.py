"""The config objects the rest of actord uses, and the defaults they share with the TOML shapes.

Responsibility: define the public, frozen msgspec Structs (``Config`` and its parts, SPEC
section 8), the Literal types of their enumerated fields, the default values, and
:func:`default_socket_path` (the one default computed from the environment). No validation
here: ``actord.core.config_build`` is the only producer of checked values, and the rest of
actord trusts any ``Config`` (``actord.core.config`` states what valid means); one built by
hand, as tests do, is only as valid as its author made it. Import the names from
``actord.core.config``, which re-exports them all. Pure: no I/O; only
:func:`default_socket_path` reads the environment.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import msgspec

Restart = Literal["permanent", "transient", "temporary"]
Mode = Literal["strict", "permissive"]
Effect = Literal["allow", "deny"]
Op = Literal["eq", "ne", "in", "nin", "exists", "matches"]
# Defaults shared by the public objects and the TOML shapes (the others live in their class).
DEFAULT_TIMEOUT = 10.0  # seconds: [daemon] shutdown_timeout and a service's stop_timeout
DEFAULT_STALL_TIMEOUT = 3.0  # seconds without a heartbeat before a worker is "stalled"
MIN_STALL_TIMEOUT = 0.5  # below this, a busy machine's scheduling delays look like stalls
DEFAULT_MAX_FRAME = 8 * 1024 * 1024
DEFAULT_LOG_LEVEL = "info"
DEFAULT_LOG_RING = 10_000  # records the daemon keeps for `actord logs`
DEFAULT_RESTART: Restart = "transient"
DEFAULT_MODE: Mode = "permissive"
MAX_WORKERS = 256
DEFAULT_NODE_TIMEOUT = 3.0  # seconds: [cluster] node_timeout (SPEC 11)
MIN_NODE_TIMEOUT = 0.5  # below this, scheduling delays on a busy machine look like dead nodes
DEFAULT_CLUSTER_NAME = "actord"  # [cluster] name: the prefix of subjects and buckets


# -- the objects the rest of actord uses --------------------------------------------------------


class Actor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who a process or client acts as (SPEC section 7); also the TOML shape of ``actor``."""

    id: str
    meta: dict[str, Any] = {}


class Backoff(msgspec.Struct, frozen=True):
    """Delay before restart n (from 0): ``min(initial * factor**n, max)``, +/- ``jitter``."""

    initial: float = 0.1
    max: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1


class Intensity(msgspec.Struct, frozen=True):
    """More than ``max_restarts`` restarts within ``period`` seconds: the service has failed."""

    max_restarts: int = 5
    period: float = 10.0


class DaemonConfig(msgspec.Struct, frozen=True):
    """The ``[daemon]`` table: control socket, workers' ``sys.path``, limits and logging."""

    socket: str
    socket_group: str | None = None  # group of the socket (mode 0660); None: mode 0600
    python_path: tuple[str, ...] = ()
    shutdown_timeout: float = DEFAULT_TIMEOUT
    max_frame: int = DEFAULT_MAX_FRAME
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = "text"  # text | json (one JSON object a line, for log shippers)
    log_ring: int = DEFAULT_LOG_RING
    metrics: tuple[str, int] | None = None  # (host, port) of the Prometheus endpoint; None: off
    stall_timeout: float = DEFAULT_STALL_TIMEOUT  # see actord/router/stall.py


class HostConfig(msgspec.Struct, frozen=True):
    """A pool of ``workers`` OS processes."""

    name: str
    workers: int


class ProcessConfig(msgspec.Struct, frozen=True):
    """A process id and its entry point ``module.path:function``."""

    id: str
    entry: str


class ServiceConfig(msgspec.Struct, frozen=True):
    """A supervised process; ``registered_name`` is the TOML key ``name``."""

    name: str
    process: str
    host: str
    args: tuple[Any, ...] = ()
    auto_start: bool = True
    registered_name: str | None = None
    restart: Restart = DEFAULT_RESTART
    backoff: Backoff = Backoff()
    intensity: Intensity = Intensity()
    stop_timeout: float = DEFAULT_TIMEOUT
    depends_on: tuple[str, ...] = ()
    actor: Actor | None = None
    scope: tuple[str, ...] = ()


class Condition(msgspec.Struct, frozen=True):
    """``field op value``; ``in``/``nin`` values are tuples, ``matches`` a valid regex."""

    field: str
    op: Op
    value: object = None


class Policy(msgspec.Struct, frozen=True):
    """Allow or deny ``actions`` (globs) on ``resources`` (globs) when all conditions hold."""

    name: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    effect: Effect
    conditions: tuple[Condition, ...] = ()


class Scope(msgspec.Struct, frozen=True):
    """A named set of policies."""

    name: str
    policies: tuple[str, ...] = ()


class Client(msgspec.Struct, frozen=True, kw_only=True):
    """Maps control-socket peers (exactly one of user/group/uid/gid) to an actor and scope."""

    user: str | None = None
    group: str | None = None
    uid: int | None = None
    gid: int | None = None
    actor: Actor
    scope: tuple[str, ...] = ()


class SecurityConfig(msgspec.Struct, frozen=True):
    """The ``[security]`` table; ``mode`` defaults to permissive (see the module docstring)."""

    mode: Mode = DEFAULT_MODE
    policies: dict[str, Policy] = {}
    scopes: dict[str, Scope] = {}
    clients: tuple[Client, ...] = ()


class ClusterTLS(msgspec.Struct, frozen=True, kw_only=True):
    """TLS of the NATS connection: absolute paths; ``cert`` and ``key`` come together."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class ClusterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[cluster]`` table (SPEC 11): this node's name, its NATS servers and options."""

    node: str
    servers: tuple[str, ...]
    name: str = DEFAULT_CLUSTER_NAME
    credentials: str | None = None  # absolute path of a NATS creds file
    tls: ClusterTLS | None = None
    node_timeout: float = DEFAULT_NODE_TIMEOUT


class Config(msgspec.Struct, frozen=True):
    """A whole, valid config; ``path`` is the file's absolute path (for reload)."""

    path: str
    daemon: DaemonConfig
    hosts: dict[str, HostConfig] = {}
    processes: dict[str, ProcessConfig] = {}
    services: dict[str, ServiceConfig] = {}
    security: SecurityConfig = SecurityConfig()
    cluster: ClusterConfig | None = None  # None: a single node, no NATS (SPEC 11)


# -- the one default the environment decides ------------------------------------------------------


def default_socket_path() -> str:
    """The control socket used when neither the config nor the CLI names one.

    Root: ``/run/actord/actord.sock`` (systemd's ``RuntimeDirectory=actord``). Anyone else:
    ``$XDG_RUNTIME_DIR/actord-<uid>/actord.sock``, or ``/tmp/actord-<uid>/actord.sock`` when
    ``XDG_RUNTIME_DIR`` is unset or not absolute; the uid keeps users of a shared ``/tmp`` apart.
    """
    if os.geteuid() == 0:
        return "/run/actord/actord.sock"
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    return os.path.join(
        base if os.path.isabs(base) else "/tmp", f"actord-{os.getuid()}", "actord.sock"
    )
