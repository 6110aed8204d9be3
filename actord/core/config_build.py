"""Config building: a parsed TOML document turned into a valid ``Config`` or one ``ConfigError``.

Responsibility: everything between ``tomllib.loads`` and a ``Config``: the private ``_Raw*``
structs mirror the TOML tables and msgspec checks the document's shape against them (types,
unknown and missing keys); then each table is converted and cross-checked (ids, references,
ranges, durations, paths, the depends_on graph) into the objects of ``config_model``.

Invariants: :func:`build` returns only a ``Config`` that satisfies the contract stated in
``actord.core.config``, or raises one ``ConfigError`` whose message is the single line
``"<file>: <key path>: <problem>"``, the key path spelled as in TOML
(``services."app:ticker".args[0]``) and the problem in TOML's words (integer, table, ...).
Internally a mistake is an ``_Invalid(key path, problem)``, raised where it is found. In the
``_Raw*`` shapes ``None`` means "absent, use the default"; the defaults applied are those the
``actord.core.config`` docstring lists, plus the public objects' own. No I/O and no state:
it reads only the environment (CPU count, default socket path, the cwd for a relative ``file``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast, get_args

import msgspec

from actord.core.config_model import (
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_FRAME,
    DEFAULT_MODE,
    DEFAULT_RESTART,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_TIMEOUT,
    MAX_WORKERS,
    MIN_STALL_TIMEOUT,
    Actor,
    Backoff,
    Client,
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
from actord.durations import parse_duration
from actord.errors import ConfigError
from actord.ids import is_id, is_name

__all__ = ["build", "dependency_levels"]


# -- used by actord.core.config -------------------------------------------------------------------


def build(doc: dict[str, Any], file: str) -> Config:
    """``doc``, the parsed TOML of ``file``, as a ``Config``; ``ConfigError`` at the first mistake.

    ``file`` is used in the message and as the base of relative paths.
    """
    try:
        return _build(doc, file)
    except _Invalid as e:
        message = f"{file}: {_key_path(e.path)}: {e.problem}"
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


# -- internals: TOML shapes, checked by msgspec; None means "absent, use the default" -------------


_BACKOFF, _INTENSITY = Backoff(), Intensity()


class _Raw(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class _RawDaemon(_Raw):
    socket: str | None = None
    socket_group: str | None = None
    python_path: tuple[str, ...] = ()
    shutdown_timeout: Any = None
    max_frame: int = DEFAULT_MAX_FRAME
    log_level: str = DEFAULT_LOG_LEVEL
    metrics: str | None = None
    stall_timeout: Any = None


class _RawHost(_Raw):
    workers: int | None = None


class _RawProcess(_Raw):
    entry: str


class _RawBackoff(_Raw):
    initial: Any = None
    max: Any = None
    factor: float = _BACKOFF.factor
    jitter: float = _BACKOFF.jitter


class _RawIntensity(_Raw):
    max_restarts: int = _INTENSITY.max_restarts
    period: Any = None


class _RawService(_Raw):
    process: str
    host: str
    args: tuple[Any, ...] = ()
    auto_start: bool = True
    name: str | None = None
    restart: str = DEFAULT_RESTART
    backoff: _RawBackoff = _RawBackoff()
    intensity: _RawIntensity = _RawIntensity()
    stop_timeout: Any = None
    depends_on: tuple[str, ...] = ()
    actor: Actor | None = None
    scope: tuple[str, ...] = ()


class _RawCondition(_Raw):
    field: str
    op: str
    value: Any = None  # TOML has no null, so None is "absent"


class _RawPolicy(_Raw):
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    effect: str
    conditions: tuple[_RawCondition, ...] = ()


class _RawScope(_Raw):
    policies: tuple[str, ...] = ()


class _RawClient(_Raw):
    actor: Actor
    user: str | None = None
    group: str | None = None
    uid: int | None = None
    gid: int | None = None
    scope: tuple[str, ...] = ()


class _RawSecurity(_Raw):
    mode: str = DEFAULT_MODE
    policies: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    clients: tuple[_RawClient, ...] = ()


class _RawFile(_Raw):
    # Tables keyed by user ids stay ``Any``: msgspec hides dict keys in its error paths
    # (``$.hosts[...]``), so each entry is converted on its own, with its key in the path.
    daemon: _RawDaemon = _RawDaemon()
    hosts: dict[str, Any] = {}
    processes: dict[str, Any] = {}
    services: dict[str, Any] = {}
    security: _RawSecurity | None = None


# -- internals: building and cross-checks ---------------------------------------------------------

_KeyPath = tuple[str | int, ...]
_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)
_ENTRY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_SOCKET_MAX = 107  # sun_path is 108 bytes on Linux, one of them the terminating NUL


class _Invalid(Exception):
    """One mistake at one key path; :func:`build` turns it into the ConfigError line."""

    def __init__(self, path: _KeyPath, problem: str) -> None:
        super().__init__(path, problem)
        self.path, self.problem = path, problem


def _require(ok: bool, path: _KeyPath, problem: str) -> None:
    if not ok:
        raise _Invalid(path, problem)


def _build(doc: dict[str, Any], file: str) -> Config:
    raw = _convert(doc, _RawFile, ())
    base = os.path.dirname(os.path.abspath(file))
    daemon = _daemon(raw.daemon, base)
    hosts = {n: _host(n, v) for n, v in raw.hosts.items()}
    processes = {n: _process(n, v) for n, v in raw.processes.items()}
    security = _security(raw.security)
    services = {n: _service(n, v, hosts, processes, security) for n, v in raw.services.items()}
    _check_services(services)
    return Config(os.path.abspath(file), daemon, hosts, processes, services, security)


def _daemon(raw: _RawDaemon, base: str) -> DaemonConfig:
    socket = default_socket_path()
    if raw.socket is not None:
        socket = _abs_path(raw.socket, base, ("daemon", "socket"))
        _require(
            len(socket.encode()) <= _SOCKET_MAX,
            ("daemon", "socket"),
            f"path longer than {_SOCKET_MAX} bytes: {socket}",
        )
    paths = (
        _abs_path(p, base, ("daemon", "python_path", i)) for i, p in enumerate(raw.python_path)
    )
    _require(
        1024 <= raw.max_frame <= 1 << 30,
        ("daemon", "max_frame"),
        f"must be 1024..{1 << 30} bytes, got {raw.max_frame}",
    )
    _require(
        raw.socket_group is None or bool(raw.socket_group.strip()),
        ("daemon", "socket_group"),
        "must be a group name",
    )
    return DaemonConfig(
        socket=socket,
        socket_group=raw.socket_group,
        python_path=tuple(paths),
        shutdown_timeout=_duration(
            raw.shutdown_timeout, ("daemon", "shutdown_timeout"), DEFAULT_TIMEOUT
        ),
        max_frame=raw.max_frame,
        log_level=_choice(
            raw.log_level.lower(), ("debug", "info", "warning", "error"), ("daemon", "log_level")
        ),
        metrics=None if raw.metrics is None else _listen(raw.metrics, ("daemon", "metrics")),
        stall_timeout=_stall_timeout(raw.stall_timeout),
    )


def _stall_timeout(value: object) -> float:
    path = ("daemon", "stall_timeout")
    seconds = _duration(value, path, DEFAULT_STALL_TIMEOUT)
    _require(seconds >= MIN_STALL_TIMEOUT, path,
             f"must be at least {MIN_STALL_TIMEOUT * 1000:.0f}ms, got {value!r}")
    return seconds


_LISTEN_RE = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]*)):(\d{1,5})")


def _listen(value: str, path: _KeyPath) -> tuple[str, int]:
    """``"host:port"``, ``"[v6addr]:port"`` or ``":port"`` (loopback) as ``(host, port)``."""
    m = _LISTEN_RE.fullmatch(value)
    if m is None:
        raise _Invalid(
            path, f'{_q(value)} is not "host:port" (e.g. "127.0.0.1:9464", "[::1]:9464", ":9464")'
        )
    port = int(m[3])
    _require(1 <= port <= 65535, path, f"port must be 1..65535, got {port}")
    return (m[1] or m[2] or "127.0.0.1", port)


def _host(name: str, value: object) -> HostConfig:
    raw = _convert(value, _RawHost, _id_path("hosts", name))
    if raw.workers is None:
        return HostConfig(name, min(os.cpu_count() or 1, MAX_WORKERS))
    _require(
        1 <= raw.workers <= MAX_WORKERS,
        ("hosts", name, "workers"),
        f"must be 1..{MAX_WORKERS}, got {raw.workers}",
    )
    return HostConfig(name, raw.workers)


def _process(name: str, value: object) -> ProcessConfig:
    raw = _convert(value, _RawProcess, _id_path("processes", name))
    _require(
        bool(_ENTRY_RE.match(raw.entry)),
        ("processes", name, "entry"),
        f"{_q(raw.entry)} is not module.path:function",
    )
    return ProcessConfig(name, raw.entry)


def _service(
    name: str,
    value: object,
    hosts: Mapping[str, object],
    processes: Mapping[str, object],
    security: SecurityConfig,
) -> ServiceConfig:
    path = _id_path("services", name)
    raw = _convert(value, _RawService, path)
    _require(raw.process in processes, (*path, "process"), f"unknown process {_q(raw.process)}")
    _require(raw.host in hosts, (*path, "host"), f"unknown host {_q(raw.host)}")
    _check_plain(raw.args, (*path, "args"))
    _require(
        raw.name is None or is_name(raw.name),
        (*path, "name"),
        f"{_q(raw.name)} is not a usable name (1-255 printable characters, not starting "
        "with {)",
    )
    b, i, bpath, ipath = raw.backoff, raw.intensity, (*path, "backoff"), (*path, "intensity")
    backoff = Backoff(
        _duration(b.initial, (*bpath, "initial"), _BACKOFF.initial),
        _duration(b.max, (*bpath, "max"), _BACKOFF.max),
        b.factor,
        b.jitter,
    )
    _require(backoff.max >= backoff.initial, (*bpath, "max"), "must not be less than initial")
    _require(b.factor >= 1, (*bpath, "factor"), f"must be >= 1, got {b.factor}")
    _require(0 <= b.jitter <= 1, (*bpath, "jitter"), f"must be in [0, 1], got {b.jitter}")
    period = _duration(i.period, (*ipath, "period"), _INTENSITY.period)
    _require(i.max_restarts >= 0, (*ipath, "max_restarts"), f"must be >= 0, got {i.max_restarts}")
    _require(period > 0, (*ipath, "period"), "must be more than zero")
    return ServiceConfig(
        name=name,
        process=raw.process,
        host=raw.host,
        args=raw.args,
        auto_start=raw.auto_start,
        registered_name=raw.name,
        restart=_choice(raw.restart, get_args(Restart), (*path, "restart")),
        backoff=backoff,
        intensity=Intensity(i.max_restarts, period),
        stop_timeout=_duration(raw.stop_timeout, (*path, "stop_timeout"), DEFAULT_TIMEOUT),
        depends_on=raw.depends_on,  # checked by _check_services once all services are known
        actor=None if raw.actor is None else _actor(raw.actor, (*path, "actor")),
        scope=_refs(raw.scope, security.scopes, "scope", (*path, "scope")),
    )


def _check_services(services: Mapping[str, ServiceConfig]) -> None:
    owners: dict[str, str] = {}
    for name, s in services.items():
        _refs(s.depends_on, services, "service", ("services", name, "depends_on"))
        if s.registered_name is not None:
            other = owners.setdefault(s.registered_name, name)
            _require(
                other == name,
                ("services", name, "name"),
                f"{_q(s.registered_name)} is already the name of service {_q(other)}",
            )
    deps = {n: s.depends_on for n, s in services.items()}
    _, stuck = dependency_levels(deps)
    if stuck:
        cycle = _cycle(deps, stuck)
        raise _Invalid(
            ("services", cycle[0], "depends_on"),
            "dependency cycle " + " -> ".join(_q(n) for n in cycle),
        )


def _security(raw: _RawSecurity | None) -> SecurityConfig:
    if raw is None:
        return SecurityConfig()
    policies = {n: _policy(n, v) for n, v in raw.policies.items()}
    scopes: dict[str, Scope] = {}
    for name, value in raw.scopes.items():
        path = _name_path(("security", "scopes"), name)
        r = _convert(value, _RawScope, path)
        scopes[name] = Scope(name, _refs(r.policies, policies, "policy", (*path, "policies")))
    return SecurityConfig(
        mode=_choice(raw.mode, get_args(Mode), ("security", "mode")),
        policies=policies,
        scopes=scopes,
        clients=tuple(
            _client(c, scopes, ("security", "clients", i)) for i, c in enumerate(raw.clients)
        ),
    )


def _policy(name: str, value: object) -> Policy:
    path = _name_path(("security", "policies"), name)
    raw = _convert(value, _RawPolicy, path)
    for key, globs in (("actions", raw.actions), ("resources", raw.resources)):
        _require(bool(globs) and all(globs), (*path, key), "must be a non-empty list of globs")
    conditions = (_condition(c, (*path, "conditions", i)) for i, c in enumerate(raw.conditions))
    effect = _choice(raw.effect, get_args(Effect), (*path, "effect"))
    return Policy(name, raw.actions, raw.resources, effect, tuple(conditions))


def _condition(raw: _RawCondition, path: _KeyPath) -> Condition:
    _require(bool(raw.field), (*path, "field"), "must not be empty")
    root = raw.field.split(".", 1)[0]
    _require(
        root in ("actor", "action", "resource", "meta"),
        (*path, "field"),
        f"unknown field {_q(raw.field)} (fields: actor.id, actor.meta.*, action, resource, "
        "meta.*)",
    )
    op: Op = _choice(raw.op, get_args(Op), (*path, "op"))
    value, vpath = raw.value, (*path, "value")
    if op == "exists":
        value = True if value is None else value
        _require(isinstance(value, bool), vpath, 'must be true or false for op "exists"')
    elif value is None:
        raise _Invalid(vpath, f"missing required key (op {_q(op)} needs a value)")
    elif op in ("in", "nin"):
        _require(isinstance(value, list), vpath, f"must be an array for op {_q(op)}")
        value = tuple(value)
    elif op == "matches":
        _require(isinstance(value, str), vpath, 'must be a regex string for op "matches"')
        try:
            re.compile(value)
        except re.error as e:
            raise _Invalid(vpath, f"bad regex {_q(value)}: {e}") from None
    _check_plain(value, vpath)
    return Condition(raw.field, op, value)


def _client(raw: _RawClient, scopes: Mapping[str, Scope], path: _KeyPath) -> Client:
    given = [
        (k, v)
        for k, v in (("user", raw.user), ("group", raw.group), ("uid", raw.uid), ("gid", raw.gid))
        if v is not None
    ]
    _require(len(given) == 1, path, f"needs exactly one of user, group, uid, gid, got {len(given)}")
    key, value = given[0]
    _require(
        value != "" and not (isinstance(value, int) and value < 0),
        (*path, key),
        f"bad {key} {_q(value)}",
    )
    return Client(
        user=raw.user,
        group=raw.group,
        uid=raw.uid,
        gid=raw.gid,
        actor=_actor(raw.actor, (*path, "actor")),
        scope=_refs(raw.scope, scopes, "scope", (*path, "scope")),
    )


def _actor(actor: Actor, path: _KeyPath) -> Actor:
    _require(bool(actor.id), (*path, "id"), "must not be empty")
    _check_plain(actor.meta, (*path, "meta"))
    return actor


# -- internals: small helpers ---------------------------------------------------------------------

_TOML_WORDS = {"str": "string", "int": "integer", "bool": "boolean", "object": "table"}


def _convert(value: object, type_: type[_T], path: _KeyPath) -> _T:
    """``msgspec.convert``, its error rewritten as a key path and a problem in TOML's words."""
    try:
        return msgspec.convert(value, type_, strict=True)
    except msgspec.ValidationError as e:  # "Expected `int`, got `str` - at `$.backoff.factor`"
        m = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", str(e))
        what, at = (m[1], m[2] or "") if m else (str(e), "")
        sub = path + tuple(int(i) if i else k for k, i in re.findall(r"\.(\w+)|\[(\d+)\]", at))
        field = re.match(r"^Object (contains unknown|missing required) field `(.*)`$", what)
        if field:
            problem = "unknown key" if field[1] == "contains unknown" else "missing required key"
            raise _Invalid((*sub, field[2]), problem) from None
        what = re.sub(r"`([^`]*)`", _toml_words, what)
        raise _Invalid(sub, what[:1].lower() + what[1:]) from None


def _toml_words(m: re.Match[str]) -> str:
    """msgspec's type names in TOML's words: `int | str | null` -> integer or string."""
    return " or ".join(_TOML_WORDS.get(t, t) for t in m[1].split(" | ") if t != "null")


def _duration(value: object, path: _KeyPath, default: float) -> float:
    if value is None:
        return default
    _require(
        not isinstance(value, float),
        path,  # float ms is more likely meant as seconds
        f'bad duration {value!r} (use e.g. "500ms", "5s", "1m" or int ms)',
    )
    try:
        return parse_duration(value)
    except ValueError as e:
        raise _Invalid(path, str(e)) from None


def _choice(value: str, choices: tuple[_S, ...], path: _KeyPath) -> _S:
    _require(
        value in choices, path, f"{_q(value)} is not one of " + ", ".join(_q(c) for c in choices)
    )
    return cast(_S, value)


def _refs(
    names: tuple[str, ...], known: Mapping[str, object], what: str, path: _KeyPath
) -> tuple[str, ...]:
    """``names`` unchanged, once each is known and none is repeated."""
    for i, n in enumerate(names):
        _require(n in known, (*path, i), f"unknown {what} {_q(n)}")
        _require(n not in names[:i], (*path, i), f"{what} {_q(n)} is listed twice")
    return names




def _cycle(deps: Mapping[str, Sequence[str]], stuck: list[str]) -> list[str]:
    """A cycle among ``stuck``: each stuck node has a stuck dependency, so walking must loop."""
    left, node = set(stuck), stuck[0]
    walked: list[str] = []
    while node not in walked:
        walked.append(node)
        node = next(d for d in deps[node] if d in left)
    return [*walked[walked.index(node) :], node]


def _check_plain(value: object, path: _KeyPath) -> None:
    """Refuse what cannot cross a process boundary (SPEC section 2); from TOML: dates, times."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, (*path, i))
    else:
        _require(
            not isinstance(value, datetime.date | datetime.time),
            path,
            "dates and times are not msgpack values; use a string",
        )


def _id_path(table: str, name: str) -> _KeyPath:
    _require(is_id(name), (table, name), "not a namespace:name id")
    return (table, name)


def _name_path(table: _KeyPath, name: str) -> _KeyPath:
    _require(bool(name.strip()), (*table, name), "name must not be empty")
    return (*table, name)


def _abs_path(value: str, base: str, path: _KeyPath) -> str:
    _require(bool(value) and "\0" not in value, path, "must be a non-empty path")
    return os.path.abspath(os.path.join(base, value))


def _key_path(path: _KeyPath) -> str:
    """TOML spelling of a key path: ``services."app:ticker".args[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _q(part)
            out += f".{key}" if out else key
    return out or "(top level)"


def _q(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
