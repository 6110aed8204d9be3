"""The CLI never breaks (SPEC 9): a table of bad inputs walked through every command.

Each row runs ``actord ...`` as a subprocess (argv may hold raw bytes, e.g. invalid UTF-8)
against one shared daemon (``max_frame = 65536``) and asserts: the documented exit code,
exactly one ``actord: ...`` line on stderr for a failure (none for a success), no traceback
anywhere, the daemon alive, and a bystander process unharmed (same PID under its name, same
worker OS pid, no worker restarted). A usage error (exit 2) also starts no process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actord.durations import MAX_DURATION, parse_duration
from actord.testing import Daemon, wait_for
from tests.conftest import ACTORS, config_text

PROCESSES = {
    "t:idle": "cli_probes:idle", "t:returner": "cli_probes:returner", "t:odd": "cli_probes:odd",
    "t:failer": "cli_probes:failer", "t:slow": "cli_probes:slow",
}
SERVICES = """
[services."t:svc"]
process = "t:idle"
host = "t:a"
name = "svc"
stop_timeout = "200ms"
[services."t:svcfail"]
process = "t:failer"
host = "t:a"
restart = "temporary"
auto_start = false
"""
MAX_FRAME = 65536
BIG = "x" * (MAX_FRAME + 1000)  # a value over max_frame

# check-config inputs: name -> file text (@DIR@: a directory that exists)
CONFIGS = {
    "good": f'[daemon]\nsocket = "/tmp/actord-cli-test.sock"\npython_path = ["{ACTORS}"]\n'
            '[processes."t:idle"]\nentry = "cli_probes:idle"\n',
    "dup_host": '[hosts."t:a"]\nworkers = 1\n[hosts."t:a"]\nworkers = 2\n',
    "bad_toml": "[daemon\n",
    "missing_module": f'[daemon]\npython_path = ["{ACTORS}"]\n'
                      '[processes."t:x"]\nentry = "no_such_module_here:main"\n',
    "missing_submodule": f'[daemon]\npython_path = ["{ACTORS}"]\n'
                         '[processes."t:x"]\nentry = "cli_probes.nothing:main"\n',
    "missing_python_path": '[daemon]\nsocket = "/tmp/actord-cli-test.sock"\n'
                           'python_path = ["/nonexistent/actord/dir"]\n',
    "relative_socket": '[daemon]\nsocket = "run/actord.sock"\n',
    "unknown_group": '[daemon]\nsocket = "/tmp/actord-cli-test.sock"\n'
                     'socket_group = "nosuchgroup"\n',
}


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with a small max_frame and two services, shared by the module."""
    text = config_text(PROCESSES, extra=SERVICES, shutdown_timeout="1s").replace(
        "[daemon]\n", f"[daemon]\nmax_frame = {MAX_FRAME}\n", 1)
    d = Daemon(tmp_path_factory.mktemp("cli"), text)
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        assert d.stop() == 0, d.log()


@pytest.fixture(scope="module")
def world(daemon: Daemon) -> dict[str, Any]:
    """The bystander (a named idle process on t:a), its worker, and the row inputs on disk."""
    pid = daemon.call("spawn", id="t:idle", host="t:a", name="bystander")
    files = {"big": daemon.workdir / "big.txt"}
    files["big"].write_text(json.dumps(BIG))
    files["binary"] = daemon.workdir / "binary.bin"
    files["binary"].write_bytes(b"\xff\x00")
    for name, text in CONFIGS.items():
        files[f"cfg_{name}"] = daemon.workdir / f"{name}.toml"
        files[f"cfg_{name}"].write_text(text)
    return {"pid": pid, "workers": _workers(daemon), "files": files}


def _workers(daemon: Daemon) -> dict[tuple[str, int], tuple[int, int]]:
    return {(w["host"], w["index"]): (w["os_pid"], w["restarts"]) for w in daemon.workers()}


def short(pid: str) -> str:
    """A non-canonical spelling of ``pid``: ``{t:a|0x00003}`` -> ``{t:a|0x3}``."""
    return re.sub(r"\|0x0*([0-9a-f]+)\}$", r"|0x\1}", pid)


def deep(n: int) -> str:
    return "[" * n + "]" * n


Check = Callable[[str], bool]
ROWS: list[Any] = []


def row(id: str, argv: list[str | bytes], code: int, *, stdin: str | None = None,
        out: Check | None = None, err: str | None = None,
        env: dict[str, str] | None = None) -> None:
    """One table row: ``argv`` (placeholders below), its exit code, optional checks."""
    ROWS.append(pytest.param(argv, code, stdin, out, err, env, id=id))


def _json_is(expected: Any) -> Check:
    return lambda text: json.loads(text) == expected


# placeholders: @BY_SHORT@ the bystander's PID in a non-canonical spelling, @T@ / @T_SHORT@ a
# fresh idle process for this row, @FILE:NAME@ the CLI's @file form and @PATH:NAME@ the path of
# a file of the world fixture (big: a value over max_frame; binary: not UTF-8; cfg_NAME: the
# CONFIGS)
USAGE, FAILED, NO_DAEMON = 2, 1, 3
HUGE = str(2**64)
# -- global options
row("no-command", [], USAGE)
row("unknown-command", ["frobnicate"], USAGE)
row("version", ["--version"], 0, out=lambda t: t.startswith("actord "))
row("client-timeout-nan", ["--client-timeout", "nan", "status"], USAGE)
row("client-timeout-negative", ["--client-timeout", "-1", "status"], USAGE)
row("client-timeout-text", ["--client-timeout", "soon", "status"], USAGE)
# -- status
row("status-unknown-option", ["status", "--bogus"], USAGE)
row("status-extra-arg", ["status", "extra"], USAGE)
row("status-no-daemon", ["status", "--socket", "/nonexistent/actord.sock"], NO_DAEMON)
row("status-bad-config", ["status", "--config", "/nonexistent/actord.toml"], USAGE,
    env={"ACTORD_SOCKET": ""})
row("status-surrogate-socket", ["status", "--socket", b"/nonexistent/\xff.sock"], NO_DAEMON)
# -- ps
row("ps-unknown-host", ["ps", "--host", "no:such"], FAILED)
row("ps-host-control-chars", ["ps", "--host", "a\nb"], FAILED)
row("ps-host-surrogate", ["ps", "--host", b"\xff"], USAGE)
row("ps-filter-surrogate", ["ps", "--state", b"\xfe"], USAGE)
row("ps-filter-name", ["ps", "--name", "bystander", "--json"], 0,
    out=lambda t: len(json.loads(t)) == 1 and json.loads(t)[0]["names"] == ["bystander"])
row("ps-filter-nothing", ["ps", "--state", "no-such-state"], 0,
    out=lambda t: t.count("\n") == 1)
row("ps-filter-id-glob", ["ps", "--id", "t:id*", "--json"], 0,
    out=lambda t: {r["id"] for r in json.loads(t)} == {"t:idle"})
# -- spawn
row("spawn-unknown-id", ["spawn", "t:nosuch", "t:a"], FAILED)
row("spawn-unknown-host", ["spawn", "t:idle", "no:such"], FAILED)
row("spawn-missing-host", ["spawn", "t:idle"], USAGE)
row("spawn-huge-int", ["spawn", "t:idle", "t:a", HUGE], USAGE)
row("spawn-huge-negative-int", ["spawn", "t:idle", "t:a", f"[1, {{\"a\": -{2**63 + 1}}}]"], USAGE)
row("spawn-surrogate-arg", ["spawn", "t:idle", "t:a", b"caf\xe9"], USAGE)
row("spawn-json-surrogate", ["spawn", "t:idle", "t:a", '"\\ud800"'], USAGE)
row("spawn-bad-bytes", ["spawn", "t:idle", "t:a", '{"$bytes": 5}'], USAGE)
row("spawn-bad-base64", ["spawn", "t:idle", "t:a", '{"$bytes": "@@@"}'], USAGE)
row("spawn-bad-float", ["spawn", "t:idle", "t:a", '{"$float": "big"}'], USAGE)
row("spawn-deep-json", ["spawn", "t:idle", "t:a", deep(5000)], USAGE)
row("spawn-missing-file", ["spawn", "t:idle", "t:a", "@/nonexistent/value.json"], USAGE)
row("spawn-over-max-frame", ["spawn", "t:idle", "t:a", "@FILE:big@"], FAILED, err="too large")
row("spawn-name-newline", ["spawn", "t:idle", "t:a", "--name", "a\nb"], FAILED, err="INVALID")
row("spawn-name-tab", ["spawn", "t:idle", "t:a", "--name", "a\tb"], FAILED, err="INVALID")
row("spawn-name-long", ["spawn", "t:idle", "t:a", "--name", "n" * 300], FAILED, err="INVALID")
row("spawn-name-pid-like", ["spawn", "t:idle", "t:a", "--name", "{t:a|0x1}"], FAILED)
row("spawn-name-taken", ["spawn", "t:idle", "t:a", "--name", "bystander"], 0,  # SPEC 6: the
    out=lambda t: t.startswith("{t:a|"))                                     # holder's PID
row("spawn-name-surrogate", ["spawn", "t:idle", "t:a", "--name", b"\xff"], USAGE)
# -- send
row("send-garbage-pid", ["send", "{garbage", "hi"], FAILED, err="INVALID")
row("send-empty-pid", ["send", "{}", "hi"], FAILED, err="INVALID")
row("send-bad-hex-pid", ["send", "{t:a|0xzz}", "hi"], FAILED, err="INVALID")
row("send-unknown-pid", ["send", "{t:a|0xfffff}", "hi"], 0)  # a dead letter, as for an actor
row("send-non-canonical-pid", ["send", "@BY_SHORT@", "hi", "1"], 0)
row("send-unknown-name", ["send", "nobody-has-this-name", "hi"], FAILED, err="NOT_FOUND")
row("send-name-control-chars", ["send", "a\x1b[2Jb", "hi"], FAILED, err="INVALID")
row("send-empty-topic", ["send", "bystander", ""], FAILED)
row("send-topic-surrogate", ["send", "bystander", b"\xff"], USAGE)
row("send-bad-json-is-text", ["send", "bystander", "hi", "{not json"], 0)
row("send-nan", ["send", "bystander", "hi", "--", "NaN", "-Infinity", "1e999"], 0)
row("send-negative-looks-like-option", ["send", "bystander", "hi", "-Infinity"], USAGE)
row("send-bytes", ["send", "bystander", "hi", '{"$bytes": "aGk="}'], 0)
row("send-huge-int", ["send", "bystander", "hi", HUGE], USAGE, err="VALUES #1")
row("send-surrogate-value", ["send", "bystander", "hi", "ok", b"\xc3\x28"], USAGE, err="VALUES #2")
row("send-stdin-twice", ["send", "bystander", "hi", "-", "-"], USAGE)
row("send-stdin", ["send", "bystander", "hi", "-"], 0, stdin='{"from": "stdin"}')
row("send-file-over-max-frame", ["send", "bystander", "hi", "@FILE:big@"], FAILED, err="too large")
row("send-stdin-over-max-frame", ["send", "bystander", "hi", "-"], FAILED, stdin=BIG,
    err="too large")
# -- kill
row("kill-garbage-pid", ["kill", "{bad"], FAILED, err="INVALID")
row("kill-empty-pid", ["kill", "{}"], FAILED, err="INVALID")
row("kill-unknown-name", ["kill", "nobody-has-this-name"], FAILED, err="NOT_FOUND")
row("kill-name-control-chars", ["kill", "a\tb"], FAILED, err="INVALID")
row("kill-surrogate", ["kill", b"\xff"], USAGE)
row("kill-non-canonical-pid", ["kill", "@T_SHORT@"], 0)
# -- cancel
row("cancel-huge-deadline", ["cancel", "bystander", "--deadline", "99999999999999999999"], USAGE)
row("cancel-nan-deadline", ["cancel", "bystander", "--deadline", "NaN"], USAGE)
row("cancel-negative-deadline", ["cancel", "bystander", "--deadline", "-1"], USAGE)
row("cancel-absurd-deadline", ["cancel", "bystander", "--deadline", "9999h"], USAGE)
row("cancel-unknown-unit", ["cancel", "bystander", "--deadline", "5d"], USAGE)
row("cancel-reason-surrogate", ["cancel", "bystander", "--reason", b"\xff"], USAGE)
row("cancel-garbage-pid", ["cancel", "{garbage", "--deadline", "1s"], FAILED, err="INVALID")
row("cancel-non-canonical-pid", ["cancel", "@T_SHORT@", "--deadline", "100ms",
                                 "--reason", "two\nlines"], 0)
# -- exec
row("exec-timeout-nan", ["exec", "t:idle", "t:a", "--timeout", "nan"], USAGE)
row("exec-timeout-inf", ["exec", "t:idle", "t:a", "--timeout", "inf"], USAGE)
row("exec-timeout-negative", ["exec", "t:idle", "t:a", "--timeout", "-1"], USAGE)
row("exec-timeout-absurd", ["exec", "t:idle", "t:a", "--timeout", "1e300"], USAGE)
row("exec-timeout-text", ["exec", "t:idle", "t:a", "--timeout", "soon"], USAGE)
row("exec-timeout-expires", ["exec", "t:idle", "t:a", "--timeout", "0.2"], FAILED, err="timeout")
row("exec-huge-int", ["exec", "t:returner", "t:a", f"[{HUGE}]"], USAGE)
row("exec-unknown-id", ["exec", "t:nosuch", "t:a"], FAILED)
row("exec-over-max-frame", ["exec", "t:returner", "t:a", "@FILE:big@"], FAILED, err="too large")
row("exec-fails-multiline", ["exec", "t:failer", "t:a"], FAILED, err="line one\\nline two")
row("exec-fails-json", ["exec", "--json", "t:failer", "t:a"], FAILED,
    out=lambda t: "line two" in json.loads(t)["error"])
row("exec-bytes-result", ["exec", "t:odd", "t:a", "bytes"], 0, out=_json_is({"$bytes": "AP8="}))
row("exec-nan-result-json", ["exec", "--json", "t:odd", "t:a", "nan"], 0,
    out=_json_is({"value": {"$float": "nan"}}))
row("exec-inf-result", ["exec", "t:odd", "t:a", "inf"], 0, out=_json_is({"$float": "inf"}))
row("exec-nested-result-json", ["exec", "--json", "t:odd", "t:a", "nested"], 0,
    out=_json_is({"value": {"k": [{"$bytes": "YWI="}, {"$float": "-inf"}], "1": "int key"}}))
row("exec-bytes-roundtrip", ["exec", "t:returner", "t:a", '{"$bytes": "AAE="}'], 0,
    out=_json_is({"$bytes": "AAE="}))
row("exec-nan-roundtrip", ["exec", "t:returner", "t:a", "NaN"], 0,
    out=_json_is({"$float": "nan"}))
row("exec-float-in", ["exec", "t:returner", "t:a", '{"$float": "-inf"}'], 0,
    out=_json_is({"$float": "-inf"}))
row("exec-binary-file-is-bytes", ["exec", "t:returner", "t:a", "@FILE:binary@"], 0,
    out=_json_is({"$bytes": "/wA="}))
row("exec-stdin-bytes-object", ["exec", "t:returner", "t:a", "-"], 0,
    stdin='[{"$bytes": "AAE="}, {"$float": "nan"}]',
    out=_json_is([{"$bytes": "AAE="}, {"$float": "nan"}]))
row("exec-file-value", ["exec", "t:returner", "t:a", "@FILE:cfg_dup_host@"], 0,
    out=_json_is(CONFIGS["dup_host"]))
# -- registry, services
row("registry-extra-arg", ["registry", "extra"], USAGE)
row("registry-no-daemon", ["registry", "--socket", "/nonexistent/actord.sock"], NO_DAEMON)
row("registry-json", ["registry", "--json"], 0,
    out=lambda t: json.loads(t)["bystander"].startswith("{t:a|"))
row("services-unknown-option", ["services", "--bogus"], USAGE)
row("services-json", ["services", "--json"], 0,
    out=lambda t: {r["name"] for r in json.loads(t)} == {"t:svc", "t:svcfail"})
# -- start, stop, restart
for command in ("start", "stop", "restart"):
    row(f"{command}-missing-arg", [command], USAGE)
    row(f"{command}-unknown-service", [command, "no:such"], FAILED)
    row(f"{command}-control-chars", [command, "t:svc\n"], FAILED)
    row(f"{command}-surrogate", [command, b"t:\xff"], USAGE)
# -- reload, shutdown: bad forms only (the daemon is shared)
row("reload-extra-arg", ["reload", "now"], USAGE)
row("reload-no-daemon", ["reload", "--socket", "/nonexistent/actord.sock"], NO_DAEMON)
row("shutdown-extra-arg", ["shutdown", "now"], USAGE)
row("shutdown-unknown-option", ["shutdown", "--bogus"], USAGE)
row("shutdown-no-daemon", ["shutdown", "--socket", "/nonexistent/actord.sock"], NO_DAEMON)
# -- check-config
row("check-config-good", ["check-config", "@PATH:cfg_good@"], 0)
row("check-config-missing-file", ["check-config", "/nonexistent/actord.toml"], FAILED)
row("check-config-surrogate-path", ["check-config", b"/nonexistent/\xff.toml"], FAILED)
row("check-config-bad-toml", ["check-config", "@PATH:cfg_bad_toml@"], FAILED, err="invalid TOML")
row("check-config-dup-host", ["check-config", "@PATH:cfg_dup_host@"], FAILED,
    err='Cannot declare hosts."t:a" twice')
row("check-config-missing-module", ["check-config", "@PATH:cfg_missing_module@"], FAILED,
    err="no_such_module_here")
row("check-config-missing-submodule", ["check-config", "@PATH:cfg_missing_submodule@"], FAILED,
    err="cli_probes.nothing")
row("check-config-missing-python-path", ["check-config", "@PATH:cfg_missing_python_path@"], FAILED,
    err="daemon.python_path[0]: no such directory")
row("check-config-relative-socket", ["check-config", "@PATH:cfg_relative_socket@"], FAILED,
    err="daemon.socket: relative path")
row("check-config-unknown-group", ["check-config", "@PATH:cfg_unknown_group@"], FAILED,
    err="daemon.socket_group: unknown group 'nosuchgroup'")
# run refuses these two before starting anything, naming the file and the key
row("run-missing-python-path", ["run", "--config", "@PATH:cfg_missing_python_path@"], FAILED,
    err="missing_python_path.toml: daemon.python_path[0]: no such directory")
row("run-unknown-group", ["run", "--config", "@PATH:cfg_unknown_group@"], FAILED,
    err="unknown_group.toml: daemon.socket_group: unknown group 'nosuchgroup'")
row("check-config-json", ["check-config", "--json", "@PATH:cfg_missing_module@"], FAILED,
    out=lambda t: json.loads(t)["ok"] is False)


def _expand(arg: str | bytes, daemon: Daemon, world: dict[str, Any]) -> str | bytes:
    if isinstance(arg, bytes):
        return arg
    if arg in ("@T@", "@T_SHORT@"):
        target = daemon.call("spawn", id="t:idle", host="t:b")
        return target if arg == "@T@" else short(target)
    if arg == "@BY_SHORT@":
        return short(world["pid"])
    m = re.fullmatch(r"@(FILE|PATH):(\w+)@", arg)
    if m:  # FILE: the CLI's @PATH form (read the value from it); PATH: the bare path
        path = str(world["files"][m[2]])
        return f"@{path}" if m[1] == "FILE" else path
    return arg


@pytest.mark.parametrize(("argv", "code", "stdin", "out", "err", "env"), ROWS)
def test_bad_input(daemon: Daemon, world: dict[str, Any], argv: list[str | bytes], code: int,
                   stdin: str | None, out: Check | None, err: str | None,
                   env: dict[str, str] | None) -> None:
    """One row: its exit code, one stderr line on failure, no traceback, no harm done."""
    before = daemon.call("status")["processes"]
    argv = [_expand(a, daemon, world) for a in argv]
    r = daemon.cli(*argv, input=stdin, env=env, timeout=30)
    shown = f"argv={argv!r} rc={r.returncode}\nstdout={r.stdout!r}\nstderr={r.stderr!r}"
    assert "Traceback" not in r.stdout + r.stderr, shown
    assert r.returncode == code, shown
    if code == 0:
        assert r.stderr == "", shown
    else:
        assert r.stderr.startswith("actord: ") and r.stderr.count("\n") == 1, shown
        assert r.stderr.endswith("\n"), shown
    if err is not None:
        assert err in r.stderr, shown
    if out is not None:
        assert out(r.stdout), shown
    # nobody harmed: the daemon, the bystander, every worker
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
    assert daemon.call("registry")["bystander"] == world["pid"]
    assert _workers(daemon) == world["workers"]
    if code == USAGE:  # refused before anything acted: nothing was started
        assert daemon.call("status")["processes"] <= before, shown


def test_bystander_unharmed_after_table(daemon: Daemon, world: dict[str, Any]) -> None:
    """After the whole table the bystander is still the same live process, no worker restarted."""
    rows = daemon.call("ps")
    mine = [r for r in rows if r["pid"] == world["pid"]]
    assert mine and mine[0]["names"] == ["bystander"]
    assert _workers(daemon) == world["workers"]
    assert all(restarts == 0 for _, restarts in world["workers"].values())


def test_error_rows_stay_one_line(daemon: Daemon) -> None:
    """A service's multi-line error is escaped: one row per service in ``services``."""
    daemon.cli("start", "t:svcfail")
    wait_for(lambda: next(r for r in daemon.call("services") if r["name"] == "t:svcfail")
             .get("last_error"), 10, what="t:svcfail's error")
    r = daemon.cli("services")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(daemon.call("services")), r.stdout
    assert any("line one\\nline two\\x1b[31m" in line for line in lines), r.stdout


@pytest.mark.usefixtures("world")  # its bystander is checked unharmed at the end
def test_stopped_daemon_is_no_daemon_within_client_timeout(daemon: Daemon) -> None:
    """A SIGSTOPped daemon: exit 3 within the client timeout, for quick and waiting commands."""
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        for argv in (["status"], ["exec", "t:returner", "t:a", "1"], ["start", "t:svc"]):
            began = time.monotonic()
            r = daemon.cli("--client-timeout", "1", *argv, timeout=30)
            took = time.monotonic() - began
            assert r.returncode == NO_DAEMON and r.stderr.count("\n") == 1, (argv, r.stderr)
            assert took < 8, (argv, took)
        r = daemon.cli("ps", env={"ACTORD_CLIENT_TIMEOUT": "0.5"}, timeout=30)
        assert r.returncode == NO_DAEMON, r.stderr
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert daemon.call("registry")["bystander"]


def test_long_command_outlives_client_timeout(daemon: Daemon) -> None:
    """A live daemon is never taken for a dead one: exec longer than the client timeout works."""
    r = daemon.cli("--client-timeout", "0.4", "exec", "t:slow", "t:a", "1.5")
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, '"done"', "")


def _cli_as_nobody(argv: list[str], socket_path: str) -> tuple[int, str]:
    """Run the CLI's ``main`` in a forked child that dropped to uid/gid 65534 (nobody):
    its exit code and what it wrote to stderr. (The venv's python may not be executable
    by nobody, so the child keeps this interpreter.)"""
    from actord import cli

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no threads or event loop here
        code = 99
        try:
            os.close(read)
            sys.stderr = open(write, "w", closefd=False)  # noqa: SIM115 - flushed below
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.environ["ACTORD_SOCKET"] = socket_path
            try:
                cli.main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), data.decode(errors="replace")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_socket_not_openable_is_exit_1(daemon: Daemon) -> None:
    """A socket the user may not open is not "no daemon": exit 1, with or without --socket."""
    for argv in (["status"], ["status", "--socket", daemon.socket]):
        code, err = _cli_as_nobody(argv, daemon.socket)
        assert code == FAILED and err.count("\n") == 1, (argv, code, err)
        assert err.startswith("actord: may not open the control socket"), err


@pytest.mark.parametrize("value", ["99999999999999999999", 10**400, "nan", float("nan"),
                                   float("inf"), -1, "169h", "5d", True])
def test_absurd_durations_refused(value: object) -> None:
    """Durations are finite and at most 7 days wherever they are parsed."""
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)
    assert parse_duration("168h") == MAX_DURATION


def test_unexpected_exception_is_one_line() -> None:
    """The last line of defence: a command that raises still ends as one line, exit 1."""
    code = ("from actord import cli\n"
            "@cli.main.command('boom')\n"
            "def boom():\n"
            "    raise KeyError('x')\n"
            "cli.main(['boom'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == FAILED and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("actord: internal error: KeyError: 'x' (at "), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_the_cli_loads_no_daemon_module() -> None:
    """Every command starts a new interpreter: importing the CLI must not load the daemon's
    control server (its config and policy modules), asyncio or rich (imported by ``top``
    when it runs); each had once cost every ``actord`` call tens of milliseconds."""
    heavy = ["actord.control.server", "actord.core.config", "asyncio", "rich", "actord.daemon"]
    code = (f"import sys, actord.cli; print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
