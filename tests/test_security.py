"""Security (SPEC 7): every permission x (allowed, denied, deny over allow), through a real
daemon in strict mode, with the denied call having no effect; and CLI clients by uid."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actord.client import Client, CommandError
from actord.testing import Daemon, wait_for
from tests.conftest import config_text

PERMISSIONS = [
    "process.spawn", "process.spawn.monitored", "process.spawn.linked", "process.host",
    "process.exec", "process.send", "process.terminate", "process.cancel", "process.monitor",
    "process.unmonitor", "process.link", "process.unlink", "process.registry.register",
    "process.registry.unregister", "process.context", "process.security",
]
PROCESSES = {
    "t:idle": "security_probes:idle", "t:quick": "security_probes:quick",
    "t:recorder": "security_probes:recorder", "t:subject": "security_probes:subject",
    "t:probe": "security_probes:probe", "t:trier": "security_probes:trier",
    "t:start_trier": "security_probes:start_trier", "t:stop_trier": "security_probes:stop_trier",
}
NOBODY = 65534
SOCKET_GROUP = grp.getgrgid(NOBODY).gr_name  # nogroup on Debian
SOCKET_GID = NOBODY


def client_grants(grants: dict[int, list[str]]) -> str:
    """A strict-mode ``[security]`` table mapping each uid (a CLI client) to a scope that
    allows it these actions, on any resource."""
    lines = ['[security]\nmode = "strict"']
    for uid, actions in grants.items():
        lines += [
            f'[security.policies.uid_{uid}]\nactions = {json.dumps(actions)}\n'
            'resources = ["*"]\neffect = "allow"',
            f'[security.scopes.uid_{uid}]\npolicies = ["uid_{uid}"]',
            f'[[security.clients]]\nuid = {uid}\nactor = {{ id = "user:{{user}}" }}\n'
            f'scope = ["uid_{uid}"]',
        ]
    return "\n".join(lines) + "\n"


def strict_daemon(prefix: str, processes: dict[str, str], security: str,
                  daemon_keys: str = "") -> Iterator[Daemon]:
    """Body of a module-scoped fixture: a daemon on ``security`` (plus ``daemon_keys`` in
    its ``[daemon]`` table) whose socket other uids may reach (its directory 0711, the
    socket's group theirs); stopped at the end (exit 0)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o711)
    text = config_text(processes, extra=security).replace(
        "[daemon]\n", f'[daemon]\nsocket_group = "{SOCKET_GROUP}"\n{daemon_keys}', 1)
    d = Daemon(workdir, text)
    d.start()
    yield d
    try:
        assert d.stop() == 0, d.log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _key(action: str) -> str:
    return action.replace(".", "_")


def security_toml() -> str:
    """Strict mode; per permission P: a scope allowing all but P, and one denying P."""
    lines = [
        '[security]\nmode = "strict"',
        '[security.policies.allow_all]\nactions = ["process.*"]\nresources = ["*"]\n'
        'effect = "allow"',
        '[security.scopes.allowed]\npolicies = ["allow_all"]',
        # CLI clients: uid NOBODY may read status and send, nothing else
        '[security.policies.cli_read]\nactions = ["daemon.status", "process.send"]\n'
        'resources = ["*"]\neffect = "allow"',
        '[security.scopes.cli]\npolicies = ["cli_read"]',
        f'[[security.clients]]\nuid = {NOBODY}\nactor = {{ id = "user:{{user}}" }}\n'
        'scope = ["cli"]',
    ]
    for action in PERMISSIONS:
        k = _key(action)
        others = json.dumps([a for a in PERMISSIONS if a != action])
        lines += [
            f'[security.policies.all_but_{k}]\nactions = {others}\nresources = ["*"]\n'
            'effect = "allow"',
            f'[security.policies.deny_{k}]\nactions = ["{action}"]\nresources = ["*"]\n'
            'effect = "deny"',
            f'[security.scopes.no_{k}]\npolicies = ["all_but_{k}"]',
            f'[security.scopes.deny_{k}]\npolicies = ["allow_all", "deny_{k}"]',
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def daemon():
    """A strict-mode daemon whose socket directory other uids can traverse (0711)."""
    workdir = Path(tempfile.mkdtemp(prefix="actord-sec-"))
    workdir.chmod(0o711)
    text = config_text(PROCESSES, extra=security_toml()).replace(
        "[daemon]\n", f'[daemon]\nsocket_group = "{SOCKET_GROUP}"\n', 1)
    d = Daemon(workdir, text)
    d.start()
    yield d
    try:
        # the t:idle processes the spawn probes started ignore CANCEL: spare the shutdown
        d.kill(*(row["pid"] for row in d.call("ps")))
    finally:
        try:
            assert d.stop() == 0, d.log()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def idle_count(d: Daemon) -> int:
    return sum(1 for row in d.call("ps") if row["id"] == "t:idle")


@pytest.mark.parametrize("action", PERMISSIONS)
@pytest.mark.parametrize("case", ["allowed", "denied", "deny_over_allow"])
def test_permission_matrix(daemon: Daemon, action: str, case: str) -> None:
    """Each permission: allowed passes; missing or overridden by a deny is PERMISSION_DENIED
    with no effect."""
    scope = {"allowed": "allowed", "denied": f"no_{_key(action)}",
             "deny_over_allow": f"deny_{_key(action)}"}[case]
    name = f"sec-{_key(action)}-{case}"
    before = idle_count(daemon)
    out = daemon.exec("t:probe", "t:a", action, scope, name)
    allowed = case == "allowed"
    assert out["result"] == ("ok" if allowed else "PERMISSION_DENIED"), out
    effect = out["effect"]
    spawned = idle_count(daemon) - before
    if action.startswith("process.spawn") or action == "process.host":
        assert spawned == (1 if allowed else 0)
    if action == "process.send":
        assert effect["counts"][0] == (1 if allowed else 0)
    if action == "process.cancel":
        assert effect["counts"][1] == (1 if allowed else 0)
    if action == "process.terminate":
        assert ("target_exit" in effect) == allowed
        if allowed:
            assert effect["target_exit"] == {"error": "process terminated"}
    if action == "process.registry.register":
        assert (effect["name"] is not None) == allowed
    if action == "process.registry.unregister":
        assert (effect["name"] is None) == allowed
    if action == "process.link":  # the subject fails after linking: a linked target dies too
        assert ("target_exit" in effect) == allowed
        if allowed:
            assert effect["target_exit"] == {"error": "linked process failed"}


def test_no_escalation_to_admin(daemon: Daemon) -> None:
    """A process allowed process.security still may not start a system:admin process."""
    out = daemon.exec("t:probe", "t:a", "escalate", "allowed", "sec-escalate")
    assert out["result"] == "PERMISSION_DENIED"


def _as_uid(socket_path: str, uid: int, command: str, with_message: bool = False,
            **args: object) -> tuple[str, object]:
    """Run one control command from a child process that dropped to ``uid`` before connecting
    (SO_PEERCRED records the credentials at connect time); an error is its kind (and message
    with ``with_message``)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no event loop or threads here, only a blocking socket
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(SOCKET_GID)  # the socket's group (socket_group): may connect
            os.setuid(uid)
            try:
                with Client(socket_path) as client:
                    out = ("ok", client.call(command, 10.0, **args))
            except CommandError as e:
                out = ("error", f"{e.kind}: {e}" if with_message else e.kind)
            os.write(write, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    assert data, "the child acting as another uid crashed before answering"
    kind, value = json.loads(data)
    return kind, value


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_cli_clients_by_uid(daemon: Daemon) -> None:
    """A mapped uid may do what its scope allows and no more; an unmapped one gets nothing."""
    assert _as_uid(daemon.socket, NOBODY, "status")[0] == "ok"
    assert _as_uid(daemon.socket, NOBODY, "spawn", id="t:idle", host="t:a") == (
        "error", "PERMISSION_DENIED")
    assert _as_uid(daemon.socket, NOBODY, "restart-worker", host="t:a", index=0) == (
        "error", "PERMISSION_DENIED")  # daemon.worker on t:a: not in its scope
    assert _as_uid(daemon.socket, NOBODY - 1, "status") == ("error", "PERMISSION_DENIED")
    # root is system:admin
    assert daemon.call("spawn", id="t:quick", host="t:a").startswith("{t:a|")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
def test_unmapped_client_cannot_probe_names(daemon: Daemon) -> None:
    """Strict mode: a client without a permission gets PERMISSION_DENIED for a name whether
    it exists or not, and the answer never shows the name's PID."""
    pid = daemon.call("spawn", id="t:idle", host="t:a", name="sec-probed")
    for command, extra in (("send", {"topic": "hi"}), ("kill", {}), ("cancel", {})):
        for dest in ("sec-probed", "sec-no-such-name"):
            kind, message = _as_uid(daemon.socket, NOBODY - 1, command, True, dest=dest, **extra)
            assert kind == "error" and str(message).startswith("PERMISSION_DENIED"), (
                command, dest, message)
            assert pid not in str(message) and "{" not in str(message), message
    # a client allowed process.send on any PID still learns NOT_FOUND for a missing name
    assert _as_uid(daemon.socket, NOBODY, "send", dest="sec-no-such-name", topic="hi") == (
        "error", "NOT_FOUND")
    assert daemon.call("registry")["sec-probed"] == pid


def test_socket_modes(daemon: Daemon, make_daemon) -> None:
    """The control socket is 0660 with socket_group, 0600 without: never open to others."""
    st = os.stat(daemon.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == SOCKET_GID
    plain = make_daemon(PROCESSES)
    assert stat.S_IMODE(os.stat(plain.socket).st_mode) == 0o600


def test_reload_applies_new_policies_to_running_processes(make_daemon) -> None:
    """A policy change by reload applies to a running process without restarting it."""
    policy = ('[security]\nmode = "strict"\n[security.policies.p]\nactions = ["{action}"]\n'
              'resources = ["*"]\neffect = "allow"\n[security.scopes.s]\npolicies = ["p"]\n')
    d = make_daemon(PROCESSES, extra=policy.format(action="process.monitor"))
    pid = d.exec("t:start_trier", "t:a", "s")
    d.call("send", dest=pid, topic="try", values=[])
    wait_for(lambda: d.call("ps")[0]["mailbox"] == 0, what="first try handled")
    d.config_path.write_text(d.config_path.read_text().replace(
        'actions = ["process.monitor"]', 'actions = ["process.send"]'))
    d.call("reload")
    d.call("send", dest=pid, topic="try", values=[])
    result = d.exec("t:stop_trier", "t:a", pid)
    assert result == {"value": ["PERMISSION_DENIED", "ok"]}


def _forged_spawn(denied: str, parent_ctx: dict[str, Any] | None,
                  forged: list[Any]) -> tuple[list[Any], int]:
    """A real Router whose only worker sends ``forged`` as the spawn request of a process
    (actor ``user:me``, context ``parent_ctx``) allowed everything but ``denied``: the
    REPLY it answers, and how many processes that started."""
    import asyncio
    import socket

    from actord.core import config, wire
    from actord.router import Router, WorkerLink
    from actord.transport import FrameProtocol

    allowed = json.dumps([a for a in PERMISSIONS if a != denied])
    cfg = config.parse(
        '[daemon]\nsocket = "/tmp/forge.sock"\n[hosts."t:a"]\nworkers = 1\n'
        '[processes."t:idle"]\nentry = "m:f"\n[security]\nmode = "strict"\n'
        f'[security.policies.partial]\nactions = {allowed}\nresources = ["*"]\n'
        'effect = "allow"\n[security.scopes.plain]\npolicies = ["partial"]\n',
        "forge.toml",
    )

    async def forge() -> tuple[list[Any], int]:
        router = Router(cfg)
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        _, conn = await loop.connect_accepted_socket(lambda: FrameProtocol(lambda f: None), ours)
        sent: list[list[Any]] = []
        conn.send = sent.append  # type: ignore[method-assign]  # what the worker would read
        link = WorkerLink("t:a", 0, conn, 0)
        router.attach(link)
        parent = router.spawn("", wire.spawn_request(
            "t:idle", "t:a", actor={"id": "user:me", "meta": {}}, scope=["plain"],
            ctx=parent_ctx))
        router.on_frame(link, [wire.CALL, 7, parent, "spawn", forged])
        started = len(router.procs) - 1
        conn.close()
        theirs.close()
        return next(f for f in sent if f[0] == wire.REPLY and f[1] == 7), started

    return asyncio.run(forge())


def test_forged_spawn_frame_cannot_skip_process_security() -> None:
    """A worker's spawn request that names an actor or scope needs ``process.security`` even
    when its flags do not say so: actor code can write raw frames to its worker's socket, so
    the router derives the check from what the request asks for, not from its flags."""
    for actor, scope in (({"id": "user:other", "meta": {}}, None), (None, ["plain", "x"])):
        # flags 0: the frame claims no with_actor/with_scope was used
        reply, started = _forged_spawn(
            "process.security", None,
            ["t:idle", "t:a", [], 0, None, actor, scope, None, None])
        assert reply[2] == "PERMISSION_DENIED" and "process.security" in str(reply[3]), reply
        assert started == 0


def test_forged_spawn_frame_cannot_skip_process_context() -> None:
    """Likewise a context other than the caller's own needs ``process.context``; the
    caller's inherited context (exactly what it was started with) needs nothing."""
    def forged(ctx: dict[str, Any] | None) -> list[Any]:
        return ["t:idle", "t:a", [], 0, ctx, None, None, None, None]

    reply, started = _forged_spawn("process.context", {"tenant": "a"}, forged({"tenant": "b"}))
    assert reply[2] == "PERMISSION_DENIED" and "process.context" in str(reply[3]), reply
    assert started == 0
    for inherited in ({"tenant": "a"}, None):
        reply, started = _forged_spawn("process.context", {"tenant": "a"}, forged(inherited))
        assert reply[2] is None and started == 1, reply
