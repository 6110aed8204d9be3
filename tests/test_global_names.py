"""``global:`` names (actord.router.global_names) against a real nats-server with JetStream.

Each test runs two or three :class:`GlobalNames` ("nodes" n1, n2, n3) on their own nats-py
connections in one asyncio loop, on a bucket of its own (a cluster name per test) in one
nats-server shared by the module. Waits are bounded polls of the replicas (:func:`until`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from itertools import count
from typing import Any

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats import connect as nats_connect
from nats.js.errors import KeyNotFoundError

from actord.ids import MAX_NAME, is_name
from actord.router.global_names import (
    GlobalNames,
    NamesUnavailable,
    decode_key,
    encode_key,
)
from tests.cluster_support import NatsServer

#: what NATS KV accepts as a key (nats-py's rule: these characters, no dot at either end)
NATS_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")
#: a wait bound with slack for a loaded machine (the updates take milliseconds)
BOUND = 10.0
P1, P1B, Q1, R1 = "{n1@t:a|0x00001}", "{n1@t:a|0x00002}", "{n2@t:a|0x00001}", "{n3@t:a|0x00001}"
_clusters = count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server with JetStream for the module (each test has its own bucket)."""
    s = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield s
    s.stop()


class Node:
    """A GlobalNames of one node on its own connection, recording every on_change."""

    def __init__(self, cluster: str, node: str) -> None:
        self.changes: list[tuple[str, str | None]] = []
        self.names = GlobalNames(cluster, node, lambda n, p: self.changes.append((n, p)))
        self.nc: Any = None

    async def start(self, url: str) -> Node:
        self.nc = await nats.connect(url)
        await self.names.start(self.nc)
        return self

    async def close(self) -> None:
        await self.names.close()
        await self.nc.close()


async def until(pred: Callable[[], Any], what: str, timeout: float = BOUND) -> Any:
    """Poll ``pred`` (letting the loop run) until truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


async def until_claimed(node: Node, name: str, pid: str) -> None:
    """Claim until it succeeds (a release's delete runs in the background), bounded."""
    deadline = time.monotonic() + BOUND
    while not await node.names.claim(name, pid):
        assert time.monotonic() < deadline, f"{pid} never got {name!r}"
        await asyncio.sleep(0.01)


def run(server: NatsServer, body: Callable[..., Awaitable[None]], *nodes: str) -> None:
    """Start one Node per name in ``nodes`` on a fresh bucket, run ``body(*Nodes)``, close."""
    cluster = f"t{next(_clusters)}"

    async def main() -> None:
        started = [await Node(cluster, n).start(server.url) for n in nodes]
        try:
            await body(*started)
        finally:
            for node in started:
                await node.close()

    asyncio.run(main())


async def raw_kv(url: str, node: Node) -> tuple[Any, Any]:
    """A plain nats-py connection and the node's bucket, for writing what no GlobalNames would."""
    nc = await nats.connect(url)
    return nc, await nc.jetstream().key_value(node.names.bucket)


async def stored(kv: Any, name: str) -> str | None:
    """The PID the bucket holds for ``name`` (None: no entry or a deleted one)."""
    try:
        return (await kv.get(encode_key(name))).value.decode()  # type: ignore[no-any-return]
    except KeyNotFoundError:
        return None


def names_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines logged on ``actord.names`` so far."""
    return [r.getMessage() for r in caplog.records if r.name == "actord.names"]


def test_a_claim_is_compare_and_set_across_nodes(server: NatsServer) -> None:
    """While n1's PID holds a name, n2's claim is False; after the release n2's is True."""
    big = "global:" + "\U0001f600" * (MAX_NAME - 7)  # the longest name, 4 UTF-8 bytes a char

    async def body(a: Node, b: Node) -> None:
        for name in ("global:db", big):
            assert await a.names.claim(name, P1)
            assert await a.names.claim(name, P1)  # the same PID again: still True
            assert not await b.names.claim(name, Q1)
            assert b.names.lookup(name) == P1  # a lost claim tells who holds it
            assert a.names.release(P1) == [name]
            assert a.names.lookup(name) is None
            await until_claimed(b, name, Q1)
            await until(lambda n=name: a.names.lookup(n) == Q1, "n1 sees n2's claim")
            assert not await a.names.claim(name, P1)
            assert b.names.release(Q1) == [name]

    run(server, body, "n1", "n2")


def test_lookup_on_another_node_follows_a_re_registration(server: NatsServer) -> None:
    """n3's replica follows n1's claim, its release and n2's new claim, each change once."""
    name = "global:leader"

    async def body(a: Node, b: Node, c: Node) -> None:
        assert await a.names.claim(name, P1)
        await until(lambda: c.names.lookup(name) == P1, "n3 sees n1's claim")
        a.names.release(P1)
        await until(lambda: c.names.lookup(name) is None, "n3 sees the release")
        assert await b.names.claim(name, Q1)
        await until(lambda: c.names.lookup(name) == Q1, "n3 sees n2's claim")
        assert c.names.names_of(Q1) == [name] and c.names.names_of(P1) == []
        assert c.changes == [(name, P1), (name, None), (name, Q1)]
        assert b.changes == [(name, P1), (name, None), (name, Q1)]

    run(server, body, "n1", "n2", "n3")


def test_a_late_release_never_deletes_a_later_holders_claim(server: NatsServer) -> None:
    """A delete of n1's claim sent late (after a reconnect) leaves n3's later claim in place."""
    name = "global:db"

    async def body(a: Node, b: Node, c: Node) -> None:
        nc, kv = await raw_kv(server.url, a)
        try:
            assert await a.names.claim(name, P1)
            await until(lambda: b.names.lookup(name) == P1, "n2 sees n1's claim")
            await b.nc.close()  # n2 cut off: its replica is frozen, its deletes wait
            assert b.names.drop_node("n1") == [name]
            with pytest.raises(NamesUnavailable):
                await b.names.claim("global:other", Q1)
            a.names.release(P1)  # n1's own delete goes through
            await until_claimed(c, name, R1)
            b.nc = await nats.connect(server.url)
            await b.names.start(b.nc)  # reconnect: retries the delete at n1's revision
            assert await stored(kv, name) == R1
            assert b.names.lookup(name) == R1
            assert b.changes == [(name, P1), (name, None), (name, R1)]
        finally:
            await nc.close()

    run(server, body, "n1", "n2", "n3")


def test_a_drop_while_cut_off_is_done_by_the_next_start_and_never_undone(
    server: NatsServer,
) -> None:
    """A drop while cut off is deleted by the next start(), never shown again from its snapshot."""
    name = "global:db"

    async def body(a: Node, b: Node) -> None:
        nc, kv = await raw_kv(server.url, a)
        try:
            assert await a.names.claim(name, P1)
            await until(lambda: b.names.lookup(name) == P1, "n2 sees n1's claim")
            await b.nc.close()
            assert b.names.drop_node("n1") == [name]
            assert await stored(kv, name) == P1  # the delete waits for the connection
            b.nc = await nats.connect(server.url)
            await b.names.start(b.nc)
            assert await stored(kv, name) is None
            assert b.changes == [(name, P1), (name, None)]
            await until(lambda: a.names.lookup(name) is None, "n1 sees its name released")
        finally:
            await nc.close()

    run(server, body, "n1", "n2")


def test_drop_node_releases_exactly_that_nodes_names_before_returning(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """drop_node drops exactly that node's names, on_change(None) before it returns; quiet races."""

    async def body(a: Node, b: Node, c: Node) -> None:
        assert await a.names.claim("global:a1", P1)
        assert await a.names.claim("global:a2", P1B)
        assert await b.names.claim("global:b", Q1)
        await until(lambda: len(c.changes) == 3 and len(b.changes) == 3, "n2, n3 see all")
        nc, kv = await raw_kv(server.url, a)
        try:
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="actord.names"):
                seen = len(c.changes)
                assert c.names.drop_node("n1") == ["global:a1", "global:a2"]
                assert sorted(c.changes[seen:]) == [("global:a1", None), ("global:a2", None)]
                assert b.names.drop_node("n1") == ["global:a1", "global:a2"]
                assert c.names.lookup("global:a1") is None and c.names.names_of(P1B) == []
                assert c.names.lookup("global:b") == Q1
                await until(lambda: a.names.lookup("global:a1") is None
                            and a.names.lookup("global:a2") is None, "n1 sees the deletes")
                assert await stored(kv, "global:a1") is None
                assert await stored(kv, "global:b") == Q1
                assert c.names.drop_node("n1") == []  # again: nothing left to drop
            logged = [r.getMessage() for r in caplog.records if r.name == "actord.names"]
            assert logged == [], logged
        finally:
            await nc.close()

    run(server, body, "n1", "n2", "n3")


def test_start_deletes_this_nodes_entries_from_an_earlier_run(server: NatsServer) -> None:
    """start() deletes this node's entries of an earlier run, unreported; other nodes' stay."""

    async def body(b: Node) -> None:
        old = await Node(b.names.bucket.removesuffix("_names"), "n1").start(server.url)
        assert await old.names.claim("global:x", P1)
        assert await old.names.claim("global:y", P1B)
        assert await b.names.claim("global:b", Q1)
        await old.nc.close()  # the earlier run dies without releasing anything
        await old.names.close()
        await until(lambda: b.names.lookup("global:y") == P1B, "n2 sees the old claims")
        new = await Node(b.names.bucket.removesuffix("_names"), "n1").start(server.url)
        try:
            nc, kv = await raw_kv(server.url, b)
            try:
                assert await stored(kv, "global:x") is None
                assert await stored(kv, "global:y") is None
                assert await stored(kv, "global:b") == Q1
            finally:
                await nc.close()
            assert new.changes == [("global:b", Q1)]
            assert new.names.lookup("global:x") is None
            await until(lambda: b.names.names_of(P1) == [] and b.names.names_of(P1B) == [],
                        "n2 sees the stale names released")
            assert await new.names.claim("global:x", P1B)
        finally:
            await new.close()

    run(server, body, "n2")


def test_malformed_entries_are_ignored_and_logged(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys that are no name, values that are no PID: ignored and logged, before and after start."""
    bad_keys = ["x", "a.b", "_w", encode_key("{bad"), "AA"]  # AA: a NUL, no printable name
    bad_values = [b"not a pid", b"\xff\xfe", b"{t:a|0x00001}", b""]

    async def body(a: Node) -> None:
        nc, kv = await raw_kv(server.url, a)
        caplog.set_level(logging.WARNING, logger="actord.names")
        try:
            for i, key in enumerate(bad_keys):
                await kv.put(key, f"{{n9@t:a|0x0000{i}}}".encode())
            for i, value in enumerate(bad_values):
                await kv.put(encode_key(f"global:v{i}"), value)
            await kv.put(encode_key("global:good"), R1.encode())
            b = await Node(a.names.bucket.removesuffix("_names"), "n2").start(server.url)
            try:
                assert b.changes == [("global:good", R1)]
                await kv.put("a.b", R1.encode())  # after start: through the watcher
                await kv.put(encode_key("global:v0"), b"still no pid")
                assert await a.names.claim("global:fine", P1)
                await until(lambda: b.names.lookup("global:fine") == P1, "n2 goes on")
                # a value that is no PID holds nothing: a claim takes the name over it
                assert await b.names.claim("global:v1", Q1)
                assert a.names.lookup("global:v0") is None
            finally:
                await b.close()
            # n1 saw each bad entry as it was written, n2 in its snapshot; both the later two
            expected = 2 * (len(bad_keys) + len(bad_values) + 2)
            await until(lambda: len(names_log(caplog)) >= expected, "every bad entry logged")
            assert len(names_log(caplog)) == expected, names_log(caplog)
            assert all("ignored" in line for line in names_log(caplog)), names_log(caplog)
        finally:
            await nc.close()

    run(server, body, "n1")


def test_claims_need_a_connection_and_a_release_undoes_a_claim_in_flight(
    server: NatsServer,
) -> None:
    """No connection: claim raises NamesUnavailable; a release undoes a claim still in flight."""

    async def body(a: Node, b: Node) -> None:
        idle = GlobalNames("never", "n9", lambda n, p: None)
        with pytest.raises(NamesUnavailable):
            await idle.claim("global:x", P1)
        claim = asyncio.get_running_loop().create_task(a.names.claim("global:gone", P1))
        await asyncio.sleep(0)  # the claim runs up to its request to the server
        assert a.names.release(P1) == []  # not held yet: nothing to drop now
        assert await claim is False
        assert a.names.lookup("global:gone") is None
        await until_claimed(b, "global:gone", Q1)  # the undone claim's delete freed it
        await until(lambda: a.names.lookup("global:gone") == Q1, "n1 sees n2's claim")
        assert a.changes == [("global:gone", Q1)]  # P1 never held it, not even briefly
        await a.nc.close()
        with pytest.raises(NamesUnavailable):
            await a.names.claim("global:y", P1B)

    run(server, body, "n1", "n2")


def test_names_survive_a_nats_server_restart(nats: NatsServer) -> None:
    """Across a nats-server restart: claims fail at once, a release is finished by start() after."""
    name = "global:db"

    async def ignore(e: Exception) -> None:
        pass

    async def connect() -> Any:
        return await nats_connect(nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                  error_cb=ignore)  # refused reconnects are expected here

    async def main() -> None:
        a, b = Node("r", "n1"), Node("r", "n2")
        a.nc, b.nc = await connect(), await connect()
        await a.names.start(a.nc)
        await b.names.start(b.nc)
        try:
            assert await a.names.claim(name, P1)
            await until(lambda: b.names.lookup(name) == P1, "n2 sees n1's claim")
            nats.stop()
            await until(lambda: not a.nc.is_connected, "n1 sees NATS gone")
            began = time.monotonic()
            with pytest.raises(NamesUnavailable):
                await a.names.claim("global:other", P1B)
            assert time.monotonic() - began < 1.0  # at once, not after the request timeout
            assert a.names.release(P1) == [name]
            nats.start()
            await until(lambda: a.nc.is_connected and b.nc.is_connected, "both reconnected")
            await a.names.start(a.nc)
            await b.names.start(b.nc)
            await until(lambda: b.names.lookup(name) is None, "n2 sees the release")
            assert await b.names.claim(name, Q1)
            await until(lambda: a.names.lookup(name) == Q1, "n1 sees n2's claim")
            assert a.changes == [(name, P1), (name, None), (name, Q1)]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


_NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"))


@given(st.text(_NAME_CHARS, min_size=1, max_size=MAX_NAME).filter(is_name))
def test_the_key_encoding_round_trips_through_valid_nats_keys(name: str) -> None:
    """Every registry name encodes to a key NATS KV accepts, which decodes to the same name."""
    key = encode_key(name)
    assert NATS_KEY.fullmatch(key) and not key.startswith(".") and not key.endswith(".")
    assert decode_key(key) == name


@given(st.text(st.sampled_from("-/_=.aAzZ09+"), min_size=1, max_size=12) | st.text())
def test_decoding_any_key_never_raises(key: str) -> None:
    """decode_key answers None or a name that encodes back to exactly that key."""
    name = decode_key(key)
    assert name is None or encode_key(name) == key

