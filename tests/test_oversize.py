"""SPEC 2's size rule: a value too large to carry fails where it is made, never a worker.

One daemon with ``max_frame = 1 MiB`` and two one-worker hosts (so "same worker" and "cross
worker" are both real), a bystander on each; after every test both workers are the ones the
test started with (no restart) and both bystanders answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actord.client import CommandError
from actord.core import wire
from actord.testing import Daemon, wait_for
from tests.conftest import config_text

MAX = 1 << 20
PROCESSES = {
    f"o:{name}": f"oversize_probes:{entry}"
    for name, entry in {
        "bystander": "bystander", "sizer": "sizer", "idle": "idle", "returns": "returns",
        "raises": "raises", "logs": "logs", "reason": "reason_target", "send": "send_probe",
        "spawn": "spawn_probe", "exec": "exec_probe", "monitor": "monitor_probe",
        "cancel": "cancel_probe", "ping": "ping_probe", "topic": "topic_probe",
    }.items()
}
HOSTS = {"o:a": 1, "o:b": 1}
#: where the probes run, and the host that is the same worker / another worker
PROBE = "o:a"
PLACES = pytest.mark.parametrize("host", ["o:a", "o:b"], ids=["same-worker", "cross-worker"])
TOO_LARGE = f"> max_frame ({MAX})"


@dataclass
class Node:
    d: Daemon
    bystanders: list[str]
    sizers: dict[str, str]
    workers: dict[tuple[str, int], int]

    def check_unharmed(self) -> None:
        """No worker restarted or replaced, every bystander alive and answering."""
        now = {(w["host"], w["index"]): (w["os_pid"], w["restarts"]) for w in self.d.workers()}
        assert now == {key: (pid, 0) for key, pid in self.workers.items()}, self.d.log()
        assert self.d.exec("o:ping", PROBE, *self.bystanders) == len(self.bystanders)
        assert not re.search(r"worker o:[ab]/0: ", self.d.log())  # no worker sent a bad frame

    def probe(self, name: str, *args: object) -> object:
        return self.d.exec(f"o:{name}", PROBE, *args)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    text = config_text(PROCESSES, hosts=HOSTS)
    text = text.replace("[daemon]\n", f"[daemon]\nmax_frame = {MAX}\n", 1)
    d = Daemon(tmp_path_factory.mktemp("oversize"), text).start()
    bystanders = [d.call("spawn", id="o:bystander", host=h) for h in HOSTS]
    sizers = {h: d.call("spawn", id="o:sizer", host=h) for h in HOSTS}
    workers = {(w["host"], w["index"]): w["os_pid"] for w in d.workers()}
    yield Node(d, bystanders, sizers, workers)
    try:
        d.kill(*bystanders, *sizers.values())  # some ignore CANCEL: spare the shutdown its wait
    finally:
        assert d.stop() == 0, d.log()


@pytest.fixture
def n(node: Node) -> Iterator[Node]:
    """The shared node, checked unharmed after the test."""
    yield node
    node.check_unharmed()


def assert_too_large(outcome: object) -> None:
    assert isinstance(outcome, list) and outcome[0] == "INVALID", outcome
    assert outcome[1].startswith("message too large: ") and TOO_LARGE in outcome[1], outcome


@PLACES
@pytest.mark.parametrize(("kind", "size"), [("str", MAX), ("bytes", MAX - 4), ("list", MAX)])
def test_send_over_max_frame_fails_at_call_site(n: Node, host: str, kind: str, size: int) -> None:
    """process.send of a value encoding to more than max_frame raises INVALID in the sender."""
    assert_too_large(n.probe("send", n.sizers[host], size, kind))


@PLACES
def test_send_with_a_huge_topic_fails_at_call_site(n: Node, host: str) -> None:
    """A topic plus destination of more than 64 Ki characters is too large as well."""
    kind, message = n.probe("topic", n.sizers[host], 70_000)
    assert kind == "INVALID" and message.startswith("message too large: topic"), message


@PLACES
def test_send_of_exactly_max_frame_arrives(n: Node, host: str) -> None:
    """A value encoding to exactly max_frame bytes (bin32 header: 5) is delivered."""
    assert n.probe("send", n.sizers[host], MAX - 5, "bytes") == MAX - 5


@PLACES
def test_spawn_values_over_max_frame_fail_at_call_site(n: Node, host: str) -> None:
    """Spawn args (every spawn*), exec args, with_message, with_context, upgrade args: INVALID
    at the call, and no child is started."""
    outcomes = n.probe("spawn", host, MAX)
    assert set(outcomes) == {"spawn", "spawn_monitored", "spawn_linked",
                             "spawn_linked_monitored", "exec", "with_message", "with_context",
                             "together", "upgrade"}
    for what, outcome in outcomes.items():
        assert_too_large(outcome), what
    assert not [p for p in n.d.call("ps") if p["id"] == "o:idle"]


@PLACES
@pytest.mark.parametrize("kind", ["str", "bytes", "list"])
def test_result_over_max_frame_ends_the_process(n: Node, host: str, kind: str) -> None:
    """A return value over max_frame ends its process abnormally with "result too large"."""
    kind_, error = n.probe("exec", host, 2 * MAX, kind)
    assert kind_ == "FAILED" and error.startswith("result too large: ") and TOO_LARGE in error


@PLACES
def test_result_of_exactly_max_frame_is_returned(n: Node, host: str) -> None:
    """A return value encoding to exactly max_frame bytes reaches the exec caller."""
    assert n.probe("exec", host, MAX - 5, "bytes") == MAX - 5


def test_monitor_sees_result_too_large(n: Node) -> None:
    """A monitor of such a process gets one EXIT with that error."""
    result = n.probe("monitor", "o:b", 10_000_000)
    assert list(result) == ["error"] and result["error"].startswith("result too large: ")


def test_ten_mb_result_to_the_control_socket(n: Node) -> None:
    """exec from a client of a child returning 10 MB: the error, not a dead worker."""
    result = n.d.call("exec", id="o:returns", host="o:b", args=[10_000_000])
    assert result["error"] == f"result too large: 10000005 bytes > max_frame ({MAX})"


@PLACES
def test_huge_exception_message_is_clipped(n: Node, host: str) -> None:
    """An exception message of 10 MB ends its process with the message clipped, marked."""
    error = n.d.call("exec", id="o:raises", host=host, args=[10_000_000])["error"]
    assert error.startswith("ValueError: eee") and error.endswith("more characters cut]")
    assert len(error) < wire.MAX_TEXT + 100


def test_huge_log_record_is_clipped(n: Node) -> None:
    """A 10 MB log record from actor code reaches the log clipped to one bounded line."""
    assert n.d.call("exec", id="o:logs", host="o:b", args=[10_000_000])["value"] == "logged"
    line = wait_for(lambda: next((ln for ln in n.d.log().splitlines() if "big record" in ln),
                                 None), what="the log record")
    assert line.endswith("more characters cut]") and len(line) < wire.MAX_TEXT + 400


def test_cancel_reason_over_max_frame_fails_and_a_long_one_is_clipped(n: Node) -> None:
    """cancel(reason=) over max_frame is INVALID; a long one arrives clipped to MAX_TEXT."""
    assert_too_large(n.probe("cancel", "o:b", 2 * MAX))
    seen = n.probe("cancel", "o:b", 500_000)
    assert seen.startswith("reason-") and seen.endswith("-cut")
    assert int(seen.split("-")[1]) < wire.MAX_TEXT + 100


def test_cancel_reason_from_a_client_is_clipped(n: Node) -> None:
    """A 1.5 MB cancel reason from the control socket arrives clipped."""
    pid = n.d.call("spawn", id="o:reason", host="o:b")
    n.d.call("cancel", dest=pid, reason="c" * 1_500_000)
    names = wait_for(lambda: [k for k in n.d.call("registry") if k.startswith("reason-")],
                     what="the reason seen")
    assert names[0].endswith("-cut") and int(names[0].split("-")[1]) < wire.MAX_TEXT + 100
    n.d.call("kill", dest=pid)


BIG_ARGS = ["a" * 120_000] * 15  # each under the OS's 128 KiB per-argument limit


@pytest.mark.parametrize("command", ["send", "spawn", "exec"])
def test_cli_value_over_max_frame_exits_1(n: Node, command: str) -> None:
    """send/spawn/exec from the CLI with 1.8 MB of values: exit 1, one line, no traceback."""
    head = {"send": [n.bystanders[1], "hi"], "spawn": ["o:idle", "o:b"],
            "exec": ["o:idle", "o:b"]}[command]
    r = n.d.cli(command, *head, *BIG_ARGS)
    assert r.returncode == 1, r
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("actord: INVALID: message too large: ") and TOO_LARGE in r.stderr


def test_cli_exec_result_too_large_exits_1(n: Node) -> None:
    """actord exec of a child returning 10 MB: exit 1 with the error on one line."""
    r = n.d.cli("exec", "o:returns", "o:a", "10000000")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert "result too large: 10000005 bytes" in r.stderr and "Traceback" not in r.stderr


def test_client_send_with_a_huge_topic_is_invalid(n: Node) -> None:
    """A control-socket send whose topic is over the bound: INVALID, never framed to a worker."""
    with pytest.raises(CommandError) as err:
        n.d.call("send", dest=n.bystanders[1], topic="t" * (MAX + 1000), values=[1])
    assert err.value.kind == "INVALID" and str(err.value).startswith("message too large: topic")


def test_request_over_the_control_limit_is_answered(n: Node) -> None:
    """A request frame beyond what the control socket decodes: an INVALID reply (the CLI's
    exit 1), not a dropped connection that reads as "no daemon"."""
    with pytest.raises(CommandError) as err:
        n.d.call("send", dest=n.bystanders[0], topic="hi", values=["x" * (3 * MAX)])
    assert err.value.kind == "INVALID" and "too large" in str(err.value)
    assert n.d.call("status")["ready"]
