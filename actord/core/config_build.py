"""Config building: a parsed TOML document turned into a valid ``Config`` or one ``ConfigError``.

Responsibility: everything between ``tomllib.loads`` and a ``Config``: the document is
converted into the TOML shapes of ``config_shapes`` (msgspec checks types, unknown and
missing keys); then each table is converted and cross-checked (ids, references, ranges,
durations, paths, the depends_on graph) into the objects of ``config_model``, with the
single-value checks of ``config_values``.

Invariants: :func:`build` returns only a ``Config`` that satisfies the contract stated in
``actord.core.config``, or raises one ``ConfigError`` whose message is the single line
``"<file>: <key path>: <problem>"``, the key path spelled as in TOML
(``services."app:ticker".args[0]``) and the problem in TOML's words (integer, table, ...).
Internally a mistake is an ``Invalid(key path, problem)``, raised where it is found. The
defaults applied are those the ``actord.core.config`` docstring lists, plus the public
objects' own. No I/O and no state: it reads only the environment (CPU count, default socket
path, the cwd for a relative ``file``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from actord.core.config_model import (
    DEFAULT_NODE_TIMEOUT,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_TIMEOUT,
    MAX_WORKERS,
    MIN_NODE_TIMEOUT,
    MIN_STALL_TIMEOUT,
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
from actord.core.config_shapes import (
    DEFAULT_BACKOFF,
    DEFAULT_INTENSITY,
    RawClient,
    RawCluster,
    RawCondition,
    RawDaemon,
    RawFile,
    RawHost,
    RawPolicy,
    RawProcess,
    RawScope,
    RawSecurity,
    RawService,
)
from actord.core.config_values import (
    Invalid,
    KeyPath,
    abs_path,
    check_plain,
    choice,
    convert,
    duration,
    id_path,
    key_path,
    name_path,
    quote,
    refs,
    require,
)
from actord.errors import ConfigError
from actord.ids import is_name, split_host

__all__ = ["build", "dependency_levels"]


# -- used by actord.core.config -------------------------------------------------------------------


def build(doc: dict[str, Any], file: str) -> Config:
    """``doc``, the parsed TOML of ``file``, as a ``Config``; ``ConfigError`` at the first mistake.

    ``file`` is used in the message and as the base of relative paths.
    """
    try:
        return _build(doc, file)
    except Invalid as e:
        message = f"{file}: {key_path(e.path)}: {e.problem}"
        raise ConfigError(" ".join(message.splitlines())) from None


def dependency_levels(deps: Mapping[str, Sequence[str]]) -> tuple[list[list[str]], list[str]]:
    """Kahn's algorithm in rounds: the levels, and what is left (nodes on or after a cycle)."""
    placed: set[str] = set()
    levels: list[list[str]] = []
    pending = list(deps)
    while level := [n for n in pending if all(d in placed for d in deps[n])]:
        levels.append(level)
        placed.update(level)
        pending = [n for n in pending if n not in placed]
    return levels, pending


_ENTRY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_SOCKET_MAX = 107  # sun_path is 108 bytes on Linux, one of them the terminating NUL


def _build(doc: dict[str, Any], file: str) -> Config:
    raw = convert(doc, RawFile, ())
    base = os.path.dirname(os.path.abspath(file))
    daemon = _daemon(raw.daemon, base)
    hosts = {n: _host(n, v) for n, v in raw.hosts.items()}
    processes = {n: _process(n, v) for n, v in raw.processes.items()}
    security = _security(raw.security)
    cluster = None if raw.cluster is None else _cluster(raw.cluster, base)
    node = None if cluster is None else cluster.node
    services = {n: _service(n, v, hosts, processes, security, node)
                for n, v in raw.services.items()}
    _check_services(services)
    return Config(os.path.abspath(file), daemon, hosts, processes, services, security, cluster)


def _daemon(raw: RawDaemon, base: str) -> DaemonConfig:
    socket = default_socket_path()
    if raw.socket is not None:
        socket = abs_path(raw.socket, base, ("daemon", "socket"))
        require(
            len(socket.encode()) <= _SOCKET_MAX,
            ("daemon", "socket"),
            f"path longer than {_SOCKET_MAX} bytes: {socket}",
        )
    paths = (
        abs_path(p, base, ("daemon", "python_path", i)) for i, p in enumerate(raw.python_path)
    )
    require(
        1024 <= raw.max_frame <= 1 << 30,
        ("daemon", "max_frame"),
        f"must be 1024..{1 << 30} bytes, got {raw.max_frame}",
    )
    require(
        raw.socket_group is None or bool(raw.socket_group.strip()),
        ("daemon", "socket_group"),
        "must be a group name",
    )
    require(
        100 <= raw.log_ring <= 1_000_000,
        ("daemon", "log_ring"),
        f"must be 100..1000000 records, got {raw.log_ring}",
    )
    return DaemonConfig(
        socket=socket,
        socket_group=raw.socket_group,
        python_path=tuple(paths),
        shutdown_timeout=duration(
            raw.shutdown_timeout, ("daemon", "shutdown_timeout"), DEFAULT_TIMEOUT
        ),
        max_frame=raw.max_frame,
        log_level=choice(
            raw.log_level.lower(), ("debug", "info", "warning", "error"), ("daemon", "log_level")
        ),
        log_format=choice(raw.log_format, ("text", "json"), ("daemon", "log_format")),
        log_ring=raw.log_ring,
        metrics=None if raw.metrics is None else _listen(raw.metrics, ("daemon", "metrics")),
        stall_timeout=_stall_timeout(raw.stall_timeout),
    )


def _stall_timeout(value: object) -> float:
    path = ("daemon", "stall_timeout")
    seconds = duration(value, path, DEFAULT_STALL_TIMEOUT)
    require(seconds >= MIN_STALL_TIMEOUT, path,
             f"must be at least {MIN_STALL_TIMEOUT * 1000:.0f}ms, got {value!r}")
    return seconds


_LISTEN_RE = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]*)):(\d{1,5})")


def _listen(value: str, path: KeyPath) -> tuple[str, int]:
    """``"host:port"``, ``"[v6addr]:port"`` or ``":port"`` (loopback) as ``(host, port)``."""
    m = _LISTEN_RE.fullmatch(value)
    if m is None:
        raise Invalid(path, f'{quote(value)} is not "host:port" '
                            '(e.g. "127.0.0.1:9464", "[::1]:9464", ":9464")')
    port = int(m[3])
    require(1 <= port <= 65535, path, f"port must be 1..65535, got {port}")
    return (m[1] or m[2] or "127.0.0.1", port)


_NODE_RE = re.compile(r"[a-z0-9_-]{1,32}")
# a NATS subject token: no dots (they separate tokens), no wildcards, no whitespace
_CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SERVER_RE = re.compile(r"(?:nats|tls)://(?:[^\s/@]+@)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+)(?::\d{1,5})?")


def _cluster(raw: RawCluster, base: str) -> ClusterConfig:
    """The ``[cluster]`` table (SPEC 11): node and cluster names, servers, files, timeout."""
    require(_NODE_RE.fullmatch(raw.node) is not None, ("cluster", "node"),
            f"{quote(raw.node)} is not a node name: 1-32 of a-z, 0-9, _ and -")
    require(_CLUSTER_NAME_RE.fullmatch(raw.name) is not None, ("cluster", "name"),
            f"{quote(raw.name)} is not a cluster name: 1-64 of A-Z, a-z, 0-9, _ and -")
    require(bool(raw.servers), ("cluster", "servers"), "must list at least one nats:// URL")
    for i, url in enumerate(raw.servers):
        require(_SERVER_RE.fullmatch(url) is not None, ("cluster", "servers", i),
                f'{quote(url)} is not a NATS URL (e.g. "nats://127.0.0.1:4222")')
        require(raw.servers.index(url) == i, ("cluster", "servers", i),
                f"{quote(url)} is listed twice")
    credentials = None
    if raw.credentials is not None:
        credentials = abs_path(raw.credentials, base, ("cluster", "credentials"))
    tls = None
    if raw.tls is not None:
        paths = {
            k: None if v is None else abs_path(v, base, ("cluster", "tls", k))
            for k, v in (("ca", raw.tls.ca), ("cert", raw.tls.cert), ("key", raw.tls.key))
        }
        require((paths["cert"] is None) == (paths["key"] is None), ("cluster", "tls"),
                "cert and key go together: give both or neither")
        tls = ClusterTLS(**paths)
    path = ("cluster", "node_timeout")
    timeout = duration(raw.node_timeout, path, DEFAULT_NODE_TIMEOUT)
    require(timeout >= MIN_NODE_TIMEOUT, path,
            f"must be at least {MIN_NODE_TIMEOUT * 1000:.0f}ms, got {raw.node_timeout!r}")
    return ClusterConfig(node=raw.node, servers=raw.servers, name=raw.name,
                         credentials=credentials, tls=tls, node_timeout=timeout)


def _host(name: str, value: object) -> HostConfig:
    raw = convert(value, RawHost, id_path("hosts", name))
    if raw.workers is None:
        return HostConfig(name, min(os.cpu_count() or 1, MAX_WORKERS))
    require(
        1 <= raw.workers <= MAX_WORKERS,
        ("hosts", name, "workers"),
        f"must be 1..{MAX_WORKERS}, got {raw.workers}",
    )
    return HostConfig(name, raw.workers)


def _process(name: str, value: object) -> ProcessConfig:
    raw = convert(value, RawProcess, id_path("processes", name))
    require(
        bool(_ENTRY_RE.match(raw.entry)),
        ("processes", name, "entry"),
        f"{quote(raw.entry)} is not module.path:function",
    )
    return ProcessConfig(name, raw.entry)


def _service_host(host: str, hosts: Mapping[str, object], node: str | None,
                  path: tuple[str | int, ...]) -> str:
    """A service's host: one of this node's (``node@`` of its own node dropped), or, in a
    cluster, ``other@host`` of another node (SPEC 11: wherever a host is taken), which only
    that node can check: an unknown one fails the service's start there."""
    other, plain = split_host(host)
    if other is None or other == node:
        require(plain in hosts, path, f"unknown host {quote(host)}")
        return plain
    require(node is not None, path,
            f"{quote(host)} names a host of node {quote(other)}: that needs a [cluster] table")
    require(_NODE_RE.fullmatch(other) is not None and bool(plain) and "@" not in plain, path,
            f"{quote(host)} is not node@host")
    return host


def _service(
    name: str,
    value: object,
    hosts: Mapping[str, object],
    processes: Mapping[str, object],
    security: SecurityConfig,
    node: str | None,
) -> ServiceConfig:
    path = id_path("services", name)
    raw = convert(value, RawService, path)
    require(raw.process in processes, (*path, "process"), f"unknown process {quote(raw.process)}")
    host = _service_host(raw.host, hosts, node, (*path, "host"))
    check_plain(raw.args, (*path, "args"))
    require(
        raw.name is None or is_name(raw.name),
        (*path, "name"),
        f"{quote(raw.name)} is not a usable name (1-255 printable characters, not starting "
        "with {)",
    )
    b, i, bpath, ipath = raw.backoff, raw.intensity, (*path, "backoff"), (*path, "intensity")
    backoff = Backoff(
        duration(b.initial, (*bpath, "initial"), DEFAULT_BACKOFF.initial),
        duration(b.max, (*bpath, "max"), DEFAULT_BACKOFF.max),
        b.factor,
        b.jitter,
    )
    require(backoff.max >= backoff.initial, (*bpath, "max"), "must not be less than initial")
    require(b.factor >= 1, (*bpath, "factor"), f"must be >= 1, got {b.factor}")
    require(0 <= b.jitter <= 1, (*bpath, "jitter"), f"must be in [0, 1], got {b.jitter}")
    period = duration(i.period, (*ipath, "period"), DEFAULT_INTENSITY.period)
    require(i.max_restarts >= 0, (*ipath, "max_restarts"), f"must be >= 0, got {i.max_restarts}")
    require(period > 0, (*ipath, "period"), "must be more than zero")
    return ServiceConfig(
        name=name,
        process=raw.process,
        host=host,
        args=raw.args,
        auto_start=raw.auto_start,
        registered_name=raw.name,
        restart=choice(raw.restart, get_args(Restart), (*path, "restart")),
        backoff=backoff,
        intensity=Intensity(i.max_restarts, period),
        stop_timeout=duration(raw.stop_timeout, (*path, "stop_timeout"), DEFAULT_TIMEOUT),
        depends_on=raw.depends_on,  # checked by _check_services once all services are known
        actor=None if raw.actor is None else _actor(raw.actor, (*path, "actor")),
        scope=refs(raw.scope, security.scopes, "scope", (*path, "scope")),
    )


def _check_services(services: Mapping[str, ServiceConfig]) -> None:
    owners: dict[str, str] = {}
    for name, s in services.items():
        refs(s.depends_on, services, "service", ("services", name, "depends_on"))
        if s.registered_name is not None:
            other = owners.setdefault(s.registered_name, name)
            require(
                other == name,
                ("services", name, "name"),
                f"{quote(s.registered_name)} is already the name of service {quote(other)}",
            )
    deps = {n: s.depends_on for n, s in services.items()}
    _, stuck = dependency_levels(deps)
    if stuck:
        cycle = _cycle(deps, stuck)
        raise Invalid(
            ("services", cycle[0], "depends_on"),
            "dependency cycle " + " -> ".join(quote(n) for n in cycle),
        )


def _security(raw: RawSecurity | None) -> SecurityConfig:
    if raw is None:
        return SecurityConfig()
    policies = {n: _policy(n, v) for n, v in raw.policies.items()}
    scopes: dict[str, Scope] = {}
    for name, value in raw.scopes.items():
        path = name_path(("security", "scopes"), name)
        r = convert(value, RawScope, path)
        scopes[name] = Scope(name, refs(r.policies, policies, "policy", (*path, "policies")))
    return SecurityConfig(
        mode=choice(raw.mode, get_args(Mode), ("security", "mode")),
        policies=policies,
        scopes=scopes,
        clients=tuple(
            _client(c, scopes, ("security", "clients", i)) for i, c in enumerate(raw.clients)
        ),
    )


def _policy(name: str, value: object) -> Policy:
    path = name_path(("security", "policies"), name)
    raw = convert(value, RawPolicy, path)
    for key, globs in (("actions", raw.actions), ("resources", raw.resources)):
        require(bool(globs) and all(globs), (*path, key), "must be a non-empty list of globs")
    conditions = (_condition(c, (*path, "conditions", i)) for i, c in enumerate(raw.conditions))
    effect = choice(raw.effect, get_args(Effect), (*path, "effect"))
    return Policy(name, raw.actions, raw.resources, effect, tuple(conditions))


def _condition(raw: RawCondition, path: KeyPath) -> Condition:
    require(bool(raw.field), (*path, "field"), "must not be empty")
    root = raw.field.split(".", 1)[0]
    require(
        root in ("actor", "action", "resource", "meta"),
        (*path, "field"),
        f"unknown field {quote(raw.field)} (fields: actor.id, actor.meta.*, action, resource, "
        "meta.*)",
    )
    op: Op = choice(raw.op, get_args(Op), (*path, "op"))
    value, vpath = raw.value, (*path, "value")
    if op == "exists":
        value = True if value is None else value
        require(isinstance(value, bool), vpath, 'must be true or false for op "exists"')
    elif value is None:
        raise Invalid(vpath, f"missing required key (op {quote(op)} needs a value)")
    elif op in ("in", "nin"):
        require(isinstance(value, list), vpath, f"must be an array for op {quote(op)}")
        value = tuple(value)
    elif op == "matches":
        require(isinstance(value, str), vpath, 'must be a regex string for op "matches"')
        try:
            re.compile(value)
        except re.error as e:
            raise Invalid(vpath, f"bad regex {quote(value)}: {e}") from None
    check_plain(value, vpath)
    return Condition(raw.field, op, value)


def _client(raw: RawClient, scopes: Mapping[str, Scope], path: KeyPath) -> Client:
    given = [
        (k, v)
        for k, v in (("user", raw.user), ("group", raw.group), ("uid", raw.uid), ("gid", raw.gid))
        if v is not None
    ]
    require(len(given) == 1, path, f"needs exactly one of user, group, uid, gid, got {len(given)}")
    key, value = given[0]
    require(
        value != "" and not (isinstance(value, int) and value < 0),
        (*path, key),
        f"bad {key} {quote(value)}",
    )
    return Client(
        user=raw.user,
        group=raw.group,
        uid=raw.uid,
        gid=raw.gid,
        actor=_actor(raw.actor, (*path, "actor")),
        scope=refs(raw.scope, scopes, "scope", (*path, "scope")),
    )


def _actor(actor: Actor, path: KeyPath) -> Actor:
    require(bool(actor.id), (*path, "id"), "must not be empty")
    check_plain(actor.meta, (*path, "meta"))
    return actor


def _cycle(deps: Mapping[str, Sequence[str]], stuck: list[str]) -> list[str]:
    """A cycle among ``stuck``: each stuck node has a stuck dependency, so walking must loop."""
    left, node = set(stuck), stuck[0]
    walked: list[str] = []
    while node not in walked:
        walked.append(node)
        node = next(d for d in deps[node] if d in left)
    return [*walked[walked.index(node) :], node]
