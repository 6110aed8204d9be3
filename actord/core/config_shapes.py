"""The TOML shapes of the config file, checked by msgspec (types, unknown and missing keys).

Responsibility: one ``Raw*`` struct per TOML table of SPEC section 8, for
:mod:`actord.core.config_build` to ``convert`` a parsed document into before it checks and
builds the public objects of :mod:`actord.core.config_model`.

Invariant: in these shapes ``None`` means "absent, use the default"; a default shown here is
the public object's own (or ``config_model``'s shared constant), so it is written once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from actord.core.config_model import (
    DEFAULT_CLUSTER_NAME,
    DEFAULT_LOG_LEVEL,
    DEFAULT_LOG_RING,
    DEFAULT_MAX_FRAME,
    DEFAULT_MODE,
    DEFAULT_RESTART,
    Actor,
    Backoff,
    Intensity,
)

DEFAULT_BACKOFF, DEFAULT_INTENSITY = Backoff(), Intensity()


class Raw(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class RawDaemon(Raw, frozen=True, forbid_unknown_fields=True):
    socket: str | None = None
    socket_group: str | None = None
    python_path: tuple[str, ...] = ()
    shutdown_timeout: Any = None
    max_frame: int = DEFAULT_MAX_FRAME
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = "text"
    log_ring: int = DEFAULT_LOG_RING
    metrics: str | None = None
    stall_timeout: Any = None


class RawHost(Raw, frozen=True, forbid_unknown_fields=True):
    workers: int | None = None


class RawProcess(Raw, frozen=True, forbid_unknown_fields=True):
    entry: str


class RawBackoff(Raw, frozen=True, forbid_unknown_fields=True):
    initial: Any = None
    max: Any = None
    factor: float = DEFAULT_BACKOFF.factor
    jitter: float = DEFAULT_BACKOFF.jitter


class RawIntensity(Raw, frozen=True, forbid_unknown_fields=True):
    max_restarts: int = DEFAULT_INTENSITY.max_restarts
    period: Any = None


class RawService(Raw, frozen=True, forbid_unknown_fields=True):
    process: str
    host: str
    args: tuple[Any, ...] = ()
    auto_start: bool = True
    name: str | None = None
    restart: str = DEFAULT_RESTART
    backoff: RawBackoff = RawBackoff()
    intensity: RawIntensity = RawIntensity()
    stop_timeout: Any = None
    depends_on: tuple[str, ...] = ()
    actor: Actor | None = None
    scope: tuple[str, ...] = ()


class RawCondition(Raw, frozen=True, forbid_unknown_fields=True):
    field: str
    op: str
    value: Any = None  # TOML has no null, so None is "absent"


class RawPolicy(Raw, frozen=True, forbid_unknown_fields=True):
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    effect: str
    conditions: tuple[RawCondition, ...] = ()


class RawScope(Raw, frozen=True, forbid_unknown_fields=True):
    policies: tuple[str, ...] = ()


class RawClient(Raw, frozen=True, forbid_unknown_fields=True):
    actor: Actor
    user: str | None = None
    group: str | None = None
    uid: int | None = None
    gid: int | None = None
    scope: tuple[str, ...] = ()


class RawSecurity(Raw, frozen=True, forbid_unknown_fields=True):
    mode: str = DEFAULT_MODE
    policies: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    clients: tuple[RawClient, ...] = ()


class RawTLS(Raw, frozen=True, forbid_unknown_fields=True):
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class RawCluster(Raw, frozen=True, forbid_unknown_fields=True):
    node: str
    servers: tuple[str, ...]
    name: str = DEFAULT_CLUSTER_NAME
    credentials: str | None = None
    tls: RawTLS | None = None
    node_timeout: Any = None


class RawFile(Raw, frozen=True, forbid_unknown_fields=True):
    # Tables keyed by user ids stay ``Any``: msgspec hides dict keys in its error paths
    # (``$.hosts[...]``), so each entry is converted on its own, with its key in the path.
    daemon: RawDaemon = RawDaemon()
    hosts: dict[str, Any] = {}
    processes: dict[str, Any] = {}
    services: dict[str, Any] = {}
    security: RawSecurity | None = None
    cluster: RawCluster | None = None


__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_INTENSITY",
    "RawClient",
    "RawCluster",
    "RawCondition",
    "RawDaemon",
    "RawFile",
    "RawHost",
    "RawPolicy",
    "RawProcess",
    "RawScope",
    "RawSecurity",
    "RawService",
    "RawTLS",
]
