"""Specification of actord.core.config: TOML to frozen objects, one clear line per mistake."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from actord.configfile import check, load
from actord.core.config import (
    Actor,
    Backoff,
    Client,
    Condition,
    Config,
    Intensity,
    Policy,
    Scope,
    default_socket_path,
    parse,
    service_start_order,
)
from actord.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
FILE = "conf/actord.toml"

BASE = """
[hosts."app:h"]
workers = 1
[processes."app:p"]
entry = "mod.sub:main"
"""

SERVICE = (
    BASE
    + """
[services."app:s"]
process = "app:p"
host = "app:h"
"""
)


def _error(text: str, path: str = FILE) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, path)
    return str(info.value)


def _services(*specs: tuple[str, list[str]]) -> str:
    text = BASE
    for name, deps in specs:
        quoted = ", ".join(f'"{d}"' for d in deps)
        text += f'[services."{name}"]\nprocess = "app:p"\nhost = "app:h"\n'
        text += f"depends_on = [{quoted}]\n"
    return text


# -- the shipped config -------------------------------------------------------------------------


def test_shipped_config_loads() -> None:
    """config/actord.toml is valid and declares the documented hosts, processes and services."""
    config = load(REPO / "config" / "actord.toml")
    assert config.path == str(REPO / "config" / "actord.toml")
    assert config.daemon.python_path == (str(REPO / "examples"),)
    assert config.daemon.shutdown_timeout == 10.0
    assert {n: h.workers for n, h in config.hosts.items()} == {
        "app:processes": 2,
        "app:background": 1,
    }
    assert {n: p.entry for n, p in config.processes.items()} == {
        "app.demo:echo": "demo.echo:main",
        "app.demo:ticker": "demo.ticker:main",
        "app.demo:counter": "demo.counter:main",
    }
    echo, ticker = config.services["app:echo"], config.services["app:ticker"]
    assert (echo.process, echo.host, echo.registered_name, echo.restart) == (
        "app.demo:echo",
        "app:processes",
        "echo",
        "permanent",
    )
    assert (ticker.host, ticker.args, ticker.registered_name) == (
        "app:background",
        (1.0,),
        "ticker",
    )
    assert ticker.depends_on == ("app:echo",)
    assert config.security.mode == "strict"
    assert service_start_order(config) == [["app:echo"], ["app:ticker"]]


def test_shipped_entries_exist_on_python_path() -> None:
    """Every shipped entry's module is a file under the shipped python_path."""
    config = load(REPO / "config" / "actord.toml")
    (root,) = config.daemon.python_path
    for process in config.processes.values():
        module, function = process.entry.split(":")
        source = Path(root, *module.split(".")).with_suffix(".py").read_text()
        assert f"async def {function}(" in source


def test_shipped_config_comments_every_key() -> None:
    """The shipped config mentions every key a user can set."""
    text = (REPO / "config" / "actord.toml").read_text()
    keys = [
        "socket", "python_path", "shutdown_timeout", "max_frame", "log_level", "log_format",
        "log_ring", "workers",
        "entry", "auto_start", "process", "host", "args", "name", "restart", "backoff",
        "intensity", "stop_timeout", "depends_on", "actor", "scope", "mode", "actions",
        "resources", "effect", "conditions", "policies", "security.clients", "group",
    ]  # fmt: skip
    assert [k for k in keys if k not in text] == []


# -- bad configs: one line, naming the file and the key -------------------------------------------

CLUSTER = "[cluster]\nnode = \"n1\"\nservers = ['nats://h:4222']\n"

BAD = [
    # (case id, text, key path, part of the problem)
    ("syntax", "a = \n", "line 1, column 5", "invalid TOML"),
    ("duplicate key", "[daemon]\nlog_level = 'info'\nlog_level = 'x'\n", "line 3, column 16",
     "invalid TOML"),
    ("unknown table", "[deamon]\n", "deamon", "unknown key"),
    ("unknown daemon key", "[daemon]\nsockt = 'x'\n", "daemon.sockt", "unknown key"),
    ("daemon not a table", "daemon = 1\n", "daemon", "expected table, got integer"),
    ("socket type", "[daemon]\nsocket = 3\n", "daemon.socket", "expected string, got integer"),
    ("socket empty", "[daemon]\nsocket = ''\n", "daemon.socket", "non-empty path"),
    ("socket too long", f"[daemon]\nsocket = '/{'s' * 120}'\n", "daemon.socket", "longer than"),
    ("python_path type", "[daemon]\npython_path = 'x'\n", "daemon.python_path", "expected array"),
    ("python_path item", "[daemon]\npython_path = ['a', 2]\n", "daemon.python_path[1]", "string"),
    ("bad duration", "[daemon]\nshutdown_timeout = '10 parsecs'\n", "daemon.shutdown_timeout",
     "bad duration"),
    ("float duration", "[daemon]\nshutdown_timeout = 1.5\n", "daemon.shutdown_timeout",
     "bad duration 1.5"),
    ("bool duration", "[daemon]\nshutdown_timeout = true\n", "daemon.shutdown_timeout",
     "bad duration True"),
    ("negative duration", "[daemon]\nshutdown_timeout = -5\n", "daemon.shutdown_timeout",
     "negative"),
    ("max_frame type", "[daemon]\nmax_frame = '8MiB'\n", "daemon.max_frame", "expected integer"),
    ("max_frame small", "[daemon]\nmax_frame = 10\n", "daemon.max_frame", "got 10"),
    ("log_level", "[daemon]\nlog_level = 'loud'\n", "daemon.log_level", '"loud" is not one of'),
    ("log_format", "[daemon]\nlog_format = 'xml'\n", "daemon.log_format", '"xml" is not one of'),
    ("log_ring small", "[daemon]\nlog_ring = 10\n", "daemon.log_ring", "got 10"),
    ("log_ring type", "[daemon]\nlog_ring = '1k'\n", "daemon.log_ring", "expected integer"),
    ("host id", "[hosts.nocolon]\n", "hosts.nocolon", "namespace:name"),
    ("host not a table", '[hosts]\n"app:h" = 2\n', 'hosts."app:h"', "expected table"),
    ("workers zero", '[hosts."app:h"]\nworkers = 0\n', 'hosts."app:h".workers', "1..256, got 0"),
    ("workers many", '[hosts."app:h"]\nworkers = 257\n', 'hosts."app:h".workers', "got 257"),
    ("workers type", '[hosts."app:h"]\nworkers = "2"\n', 'hosts."app:h".workers', "integer"),
    ("host key", '[hosts."app:h"]\ncores = 2\n', 'hosts."app:h".cores', "unknown key"),
    ("process id", '[processes."p"]\nentry = "m:f"\n', "processes.p", "namespace:name"),
    ("entry form", '[processes."a:p"]\nentry = "m.f"\n', 'processes."a:p".entry',
     "module.path:function"),
    ("entry missing", '[processes."a:p"]\n', 'processes."a:p".entry', "missing required key"),
    ("service id", BASE + '[services.s]\nprocess = "app:p"\nhost = "app:h"\n', "services.s",
     "namespace:name"),
    ("service host missing", BASE + '[services."app:s"]\nprocess = "app:p"\n',
     'services."app:s".host', "missing required key"),
    ("unknown process", SERVICE.replace('process = "app:p"', 'process = "app:nope"'),
     'services."app:s".process', 'unknown process "app:nope"'),
    ("unknown host", SERVICE.replace('host = "app:h"', 'host = "app:nope"'),
     'services."app:s".host', 'unknown host "app:nope"'),
    ("service key", SERVICE + "autostart = true\n", 'services."app:s".autostart', "unknown key"),
    ("auto_start type", SERVICE + "auto_start = 'yes'\n", 'services."app:s".auto_start',
     "expected boolean, got string"),
    ("restart", SERVICE + "restart = 'sometimes'\n", 'services."app:s".restart',
     '"sometimes" is not one of "permanent", "transient", "temporary"'),
    ("args date", SERVICE + "args = [1, 1979-05-27]\n", 'services."app:s".args[1]',
     "not msgpack values"),
    ("args nested date", SERVICE + "args = [{ at = 07:32:00 }]\n",
     'services."app:s".args[0].at', "not msgpack values"),
    ("name empty", SERVICE + "name = ''\n", 'services."app:s".name', "not a usable name"),
    ("name is a pid", SERVICE + "name = '{app:h|0x00001}'\n", 'services."app:s".name',
     "not a usable name"),
    ("backoff key", SERVICE + "backoff = { initail = '1s' }\n",
     'services."app:s".backoff.initail', "unknown key"),
    ("backoff duration", SERVICE + "backoff = { initial = 'soon' }\n",
     'services."app:s".backoff.initial', "bad duration"),
    ("backoff max", SERVICE + "backoff = { initial = '1s', max = '500ms' }\n",
     'services."app:s".backoff.max', "less than initial"),
    ("backoff factor", SERVICE + "backoff = { factor = 0.5 }\n",
     'services."app:s".backoff.factor', "must be >= 1"),
    ("backoff factor type", SERVICE + "backoff = { factor = 'x' }\n",
     'services."app:s".backoff.factor', "expected float, got string"),
    ("backoff jitter", SERVICE + "backoff = { jitter = 2 }\n",
     'services."app:s".backoff.jitter', "[0, 1]"),
    ("max_restarts", SERVICE + "intensity = { max_restarts = -1 }\n",
     'services."app:s".intensity.max_restarts', "must be >= 0"),
    ("period zero", SERVICE + "intensity = { period = '0ms' }\n",
     'services."app:s".intensity.period', "more than zero"),
    ("stop_timeout", SERVICE + "stop_timeout = '-1s'\n", 'services."app:s".stop_timeout',
     "bad duration"),
    ("depends_on unknown", SERVICE + "depends_on = ['app:x']\n",
     'services."app:s".depends_on[0]', 'unknown service "app:x"'),
    ("depends_on twice", _services(("app:a", []), ("app:b", ["app:a", "app:a"])),
     'services."app:b".depends_on[1]', "listed twice"),
    ("self dependency", _services(("app:a", ["app:a"])), 'services."app:a".depends_on',
     'dependency cycle "app:a" -> "app:a"'),
    ("scope without security", SERVICE + "scope = ['workers']\n", 'services."app:s".scope[0]',
     'unknown scope "workers"'),
    ("registered name twice",
     SERVICE + 'name = "n"\n[services."app:t"]\nprocess = "app:p"\nhost = "app:h"\nname = "n"\n',
     'services."app:t".name', 'already the name of service "app:s"'),
    ("actor id missing", SERVICE + "actor = { meta = {} }\n", 'services."app:s".actor.id',
     "missing required key"),
    ("actor id empty", SERVICE + "actor = { id = '' }\n", 'services."app:s".actor.id',
     "must not be empty"),
    ("actor key", SERVICE + "actor = { id = 'a', role = 'x' }\n",
     'services."app:s".actor.role', "unknown key"),
    ("actor meta date", SERVICE + "actor = { id = 'a', meta = { t = 1979-05-27 } }\n",
     'services."app:s".actor.meta.t', "not msgpack values"),
    ("mode", "[security]\nmode = 'lax'\n", "security.mode", '"lax" is not one of'),
    ("security key", "[security]\nstrict = true\n", "security.strict", "unknown key"),
    ("policy effect",
     "[security.policies.p]\nactions = ['*']\nresources = ['*']\neffect = 'maybe'\n",
     "security.policies.p.effect", '"maybe" is not one of "allow", "deny"'),
    ("policy effect missing", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n",
     "security.policies.p.effect", "missing required key"),
    ("policy actions empty",
     "[security.policies.p]\nactions = []\nresources = ['*']\neffect = 'allow'\n",
     "security.policies.p.actions", "non-empty"),
    ("policy name with dot",
     "[security.policies.\"a.b\"]\nactions = ['*']\nresources = []\neffect = 'allow'\n",
     'security.policies."a.b".resources', "non-empty"),
    ("condition op", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n"
     "effect = 'allow'\nconditions = [{ field = 'actor.id', op = 'like', value = 'x' }]\n",
     "security.policies.p.conditions[0].op", '"like" is not one of'),
    ("condition regex", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n"
     "effect = 'allow'\nconditions = [{ field = 'actor.id', op = 'matches', value = '(' }]\n",
     "security.policies.p.conditions[0].value", 'bad regex "("'),
    ("condition in", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n"
     "effect = 'deny'\nconditions = [{ field = 'actor.id', op = 'in', value = 'x' }]\n",
     "security.policies.p.conditions[0].value", "must be an array"),
    ("condition value missing", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n"
     "effect = 'deny'\nconditions = [{ field = 'actor.id', op = 'eq' }]\n",
     "security.policies.p.conditions[0].value", "missing required key"),
    ("condition exists", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n"
     "effect = 'deny'\nconditions = [{ field = 'meta.x', op = 'exists', value = 'yes' }]\n",
     "security.policies.p.conditions[0].value", "true or false"),
    ("condition key", "[security.policies.p]\nactions = ['*']\nresources = ['*']\n"
     "effect = 'deny'\nconditions = [{ field = 'meta.x', op = 'exists', valeu = true }]\n",
     "security.policies.p.conditions[0].valeu", "unknown key"),
    ("scope policy", "[security.scopes.s]\npolicies = ['nope']\n", "security.scopes.s.policies[0]",
     'unknown policy "nope"'),
    ("client none", "[[security.clients]]\nactor = { id = 'x' }\n", "security.clients[0]",
     "exactly one of user, group, uid, gid, got 0"),
    ("client two", "[[security.clients]]\nuser = 'a'\nuid = 1\nactor = { id = 'x' }\n",
     "security.clients[0]", "got 2"),
    ("client uid", "[[security.clients]]\nuid = -1\nactor = { id = 'x' }\n",
     "security.clients[0].uid", "bad uid -1"),
    ("client actor", "[[security.clients]]\nuser = 'a'\n", "security.clients[0].actor",
     "missing required key"),
    ("client scope", "[[security.clients]]\nuser = 'a'\nactor = { id = 'x' }\nscope = ['s']\n",
     "security.clients[0].scope[0]", 'unknown scope "s"'),
    ("cluster node missing", "[cluster]\nservers = ['nats://h:4222']\n", "cluster.node",
     "missing required key"),
    ("cluster node name", CLUSTER.replace('"n1"', '"N 1"'), "cluster.node", "not a node name"),
    ("cluster node long", CLUSTER.replace('"n1"', '"' + "n" * 33 + '"'), "cluster.node",
     "1-32 of a-z"),
    ("cluster servers empty", CLUSTER.replace("['nats://h:4222']", "[]"), "cluster.servers",
     "at least one"),
    ("cluster server url", CLUSTER.replace("nats://h:4222", "http://h"), "cluster.servers[0]",
     "not a NATS URL"),
    ("cluster server twice", CLUSTER.replace("['nats://h:4222']", "['nats://h:1', 'nats://h:1']"),
     "cluster.servers[1]", "listed twice"),
    ("cluster name", CLUSTER + "name = 'a.b'\n", "cluster.name", "not a cluster name"),
    ("cluster node_timeout", CLUSTER + "node_timeout = '100ms'\n", "cluster.node_timeout",
     "at least 500ms"),
    ("cluster node_timeout bad", CLUSTER + "node_timeout = 'soon'\n", "cluster.node_timeout",
     "bad duration"),
    ("cluster tls half", CLUSTER + "tls = { cert = 'c.pem' }\n", "cluster.tls",
     "cert and key go together"),
    ("cluster tls key", CLUSTER + "tls = { cafile = 'c.pem' }\n", "cluster.tls.cafile",
     "unknown key"),
    ("cluster credentials", CLUSTER + "credentials = ''\n", "cluster.credentials",
     "non-empty path"),
    ("cluster key", CLUSTER + "nodes = 3\n", "cluster.nodes", "unknown key"),
]  # fmt: skip


def test_cluster_files_must_be_readable(tmp_path: Path) -> None:
    """check() refuses a [cluster] credentials or TLS file that cannot be read."""
    path = tmp_path / "actord.toml"
    path.write_text(CLUSTER + "credentials = 'missing.creds'\n")
    with pytest.raises(ConfigError, match=r"cluster\.credentials: no readable file: .*missing"):
        check(load(path))
    path.write_text(CLUSTER + "tls = { ca = 'ca.pem' }\n")
    (tmp_path / "ca.pem").write_text("x")
    check(load(path))


def test_cluster_is_none_without_the_table_and_filled_with_defaults() -> None:
    """No [cluster]: None; with one: paths absolute, name "actord", node_timeout 3 s."""
    assert parse("", FILE).cluster is None
    c = parse(CLUSTER + "credentials = 'n.creds'\ntls = { ca = 'ca.pem' }\n", FILE).cluster
    assert c is not None
    assert (c.node, c.servers, c.name, c.node_timeout) == ("n1", ("nats://h:4222",), "actord", 3.0)
    assert c.credentials is not None and os.path.isabs(c.credentials)
    assert c.tls is not None and c.tls.ca is not None and os.path.isabs(c.tls.ca)
    assert c.tls.cert is None


@pytest.mark.parametrize(("text", "key", "problem"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_is_one_line_naming_file_and_key(text: str, key: str, problem: str) -> None:
    """Each mistake is refused with one line: "<file>: <key path>: <problem>"."""
    message = _error(text)
    assert "\n" not in message
    assert message.startswith(f"{FILE}: {key}: "), message
    assert problem in message, message


def test_error_message_matches_the_documented_example() -> None:
    """An unknown host reads exactly as in the docs."""
    text = SERVICE.replace('"app:s"', '"app:ticker"').replace('host = "app:h"', 'host = "app:nope"')
    assert _error(text, "config/actord.toml") == (
        'config/actord.toml: services."app:ticker".host: unknown host "app:nope"'
    )


def test_cycle_is_named() -> None:
    """A dependency cycle is refused, naming every service on it in order."""
    text = _services(("app:a", ["app:c"]), ("app:b", ["app:a"]), ("app:c", ["app:b"]))
    assert _error(text) == (
        f'{FILE}: services."app:a".depends_on: '
        'dependency cycle "app:a" -> "app:c" -> "app:b" -> "app:a"'
    )


def test_cycle_behind_an_acyclic_service_is_named() -> None:
    """A service depending on a cycle is not reported as part of it."""
    text = _services(("app:x", ["app:a"]), ("app:a", ["app:b"]), ("app:b", ["app:a"]))
    assert _error(text).endswith('dependency cycle "app:a" -> "app:b" -> "app:a"')


def test_load_missing_file() -> None:
    """A file that cannot be read is one line naming it."""
    with pytest.raises(ConfigError, match=r"^/nonexistent/actord\.toml: cannot read: "):
        load("/nonexistent/actord.toml")


def test_load_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is one line naming it."""
    path = tmp_path / "bad.toml"
    path.write_bytes(b"a = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


# -- defaults and conversions ---------------------------------------------------------------------


def test_empty_config_has_defaults() -> None:
    """An empty file is valid: no hosts, default daemon settings, permissive security."""
    config = parse("", FILE)
    assert config.hosts == {} and config.processes == {} and config.services == {}
    assert config.daemon.socket == default_socket_path()
    assert config.daemon.python_path == ()
    assert config.daemon.shutdown_timeout == 10.0
    assert config.daemon.max_frame == 8 * 1024 * 1024
    assert config.daemon.log_level == "info"
    assert config.security.mode == "permissive"
    assert service_start_order(config) == []


def test_service_defaults() -> None:
    """A service with only process and host gets the documented defaults."""
    service = parse(SERVICE, FILE).services["app:s"]
    assert service.args == () and service.auto_start is True
    assert service.registered_name is None and service.restart == "transient"
    assert service.backoff == Backoff(initial=0.1, max=30.0, factor=2.0, jitter=0.1)
    assert service.intensity == Intensity(max_restarts=5, period=10.0)
    assert service.stop_timeout == 10.0
    assert service.depends_on == () and service.actor is None and service.scope == ()


def test_workers_default_to_cpu_count() -> None:
    """A host without workers gets one per CPU."""
    config = parse('[hosts."app:h"]\n', FILE)
    assert config.hosts["app:h"].workers == min(os.cpu_count() or 1, 256)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [('"100ms"', 0.1), ('"10s"', 10.0), ('"1m"', 60.0), ('"1.5s"', 1.5), ("250", 0.25), ("0", 0.0)],
)
def test_durations(value: str, seconds: float) -> None:
    """Durations are strings with a unit or int milliseconds, stored as float seconds."""
    text = SERVICE + f"stop_timeout = {value}\nbackoff = {{ initial = {value}, max = '2m' }}\n"
    service = parse(text, FILE).services["app:s"]
    assert service.stop_timeout == pytest.approx(seconds)
    assert service.backoff.initial == pytest.approx(seconds)


def test_partial_backoff_and_intensity_keep_other_defaults() -> None:
    """Keys left out of backoff and intensity keep their defaults."""
    text = SERVICE + "backoff = { max = '1m', factor = 3 }\nintensity = { period = '1m' }\n"
    service = parse(text, FILE).services["app:s"]
    assert service.backoff == Backoff(initial=0.1, max=60.0, factor=3.0, jitter=0.1)
    assert service.intensity == Intensity(max_restarts=5, period=60.0)


def test_python_path_and_socket_resolve_relative_to_the_file(tmp_path: Path) -> None:
    """Relative paths are taken from the config file's directory; absolute ones are kept."""
    conf = tmp_path / "etc" / "actord.toml"
    text = "[daemon]\nsocket = 'run/a.sock'\npython_path = ['../lib', '/opt/x', 'src/./y']\n"
    daemon = parse(text, str(conf)).daemon
    assert daemon.socket == str(tmp_path / "etc" / "run" / "a.sock")
    assert daemon.python_path == (str(tmp_path / "lib"), "/opt/x", str(tmp_path / "etc/src/y"))


def test_log_level_is_case_insensitive() -> None:
    """log_level accepts any case and is stored in lower case."""
    assert parse("[daemon]\nlog_level = 'DEBUG'\n", FILE).daemon.log_level == "debug"


def test_service_values() -> None:
    """A fully specified service converts every key."""
    text = BASE + (
        '[services."app:a"]\nprocess = "app:p"\nhost = "app:h"\n'
        '[services."app:s"]\nprocess = "app:p"\nhost = "app:h"\nargs = [1, "x", [true]]\n'
        "auto_start = false\nname = 'svc'\nrestart = 'temporary'\nstop_timeout = '2s'\n"
        "depends_on = ['app:a']\nactor = { id = 'service:s', meta = { team = 'x' } }\n"
        "scope = ['s']\n[security.scopes.s]\n"
    )
    service = parse(text, FILE).services["app:s"]
    assert service.args == (1, "x", [True]) and service.auto_start is False
    assert (service.registered_name, service.restart) == ("svc", "temporary")
    assert service.stop_timeout == 2.0 and service.depends_on == ("app:a",)
    assert service.actor == Actor(id="service:s", meta={"team": "x"})
    assert service.scope == ("s",)


def test_security_section() -> None:
    """Policies, scopes and clients convert to their objects; conditions are normalised."""
    text = """
[security]
mode = "strict"
[security.policies.workers]
actions = ["process.*"]
resources = ["*"]
effect = "allow"
conditions = [
  { field = "actor.id", op = "in", value = ["a", "b"] },
  { field = "meta.pid", op = "exists" },
  { field = "actor.id", op = "matches", value = "^service:" },
]
[security.scopes.workers]
policies = ["workers"]
[[security.clients]]
group = "actord"
actor = { id = "user:{user}" }
scope = ["workers"]
[[security.clients]]
uid = 0
actor = { id = "system:admin" }
"""
    security = parse(text, FILE).security
    assert security.mode == "strict"
    assert security.policies["workers"] == Policy(
        name="workers",
        actions=("process.*",),
        resources=("*",),
        effect="allow",
        conditions=(
            Condition("actor.id", "in", ("a", "b")),
            Condition("meta.pid", "exists", True),
            Condition("actor.id", "matches", "^service:"),
        ),
    )
    assert security.scopes == {"workers": Scope("workers", ("workers",))}
    assert security.clients == (
        Client(group="actord", actor=Actor("user:{user}"), scope=("workers",)),
        Client(uid=0, actor=Actor("system:admin")),
    )


def test_security_mode_defaults_to_permissive() -> None:
    """Without mode, or without [security], the mode is permissive."""
    assert parse("", FILE).security.mode == "permissive"
    assert parse("[security]\n", FILE).security.mode == "permissive"


def test_config_is_frozen() -> None:
    """Config objects cannot be changed after parsing."""
    config = parse(SERVICE, FILE)
    with pytest.raises(AttributeError):
        config.services["app:s"].host = "app:other"  # type: ignore[misc]
    assert isinstance(config, Config)


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root uses /run/actord; others use XDG_RUNTIME_DIR, else /tmp, with their uid."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_socket_path() == "/run/actord/actord.sock"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == "/run/user/1000/actord-1000/actord.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative")
    assert default_socket_path() == "/tmp/actord-1000/actord.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == "/tmp/actord-1000/actord.sock"


# -- start order ----------------------------------------------------------------------------------


def test_start_order_levels() -> None:
    """Services start in dependency levels, in file order within a level."""
    text = _services(
        ("app:d", ["app:b", "app:c"]),
        ("app:c", ["app:a"]),
        ("app:b", ["app:a"]),
        ("app:a", []),
        ("app:e", []),
    )
    levels = [["app:a", "app:e"], ["app:c", "app:b"], ["app:d"]]
    assert service_start_order(parse(text, FILE)) == levels


def test_start_order_chain() -> None:
    """A chain gives one service per level."""
    text = _services(("app:c", ["app:b"]), ("app:b", ["app:a"]), ("app:a", []))
    assert service_start_order(parse(text, FILE)) == [["app:a"], ["app:b"], ["app:c"]]


def test_start_order_refuses_a_hand_built_cycle() -> None:
    """service_start_order raises on a cycle in a Config not built by parse."""
    config = parse(_services(("app:a", []), ("app:b", ["app:a"])), FILE)
    a = msgspec.structs.replace(config.services["app:a"], depends_on=("app:b",))
    cyclic = msgspec.structs.replace(config, services={**config.services, "app:a": a})
    with pytest.raises(ValueError, match="cycle"):
        service_start_order(cyclic)
