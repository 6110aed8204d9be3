"""``global:`` names (SPEC 11): claims in a JetStream key-value bucket, read from a local replica.

The bucket ``<cluster>_names`` (history 1) maps an encoded name (:func:`encode_key`) to the
holder's PID (UTF-8). Claims are compare-and-set creates, so two nodes never both win a name;
releases are deletes conditional on the revision of the claim they undo, so a late or repeated
release (every node does :meth:`GlobalNames.drop_node` for a node that went down) never deletes
a later holder's claim. A watcher applies every change to a plain dict replica, and the router's
decisions (``lookup``, ``names_of``, ``release``) read and change only that replica: they never
await. The interface the router uses::

    names = GlobalNames(cluster_name, node, on_change)   # on_change(name, pid | None)
    await names.serve(nc)        # once connected, and again after every NATS reconnect:
                                 # start(nc), retried in the background until it succeeds
    names.lookup(name) -> str | None            names.names_of(pid) -> list[str]
    await names.claim(name, pid) -> bool        # False: held by another PID (ALREADY_EXISTS);
                                                # raises NamesUnavailable when NATS can't answer
    names.release(pid) -> list[str]             # a process ended: its names, dropped now
    names.unregister(name, pid) -> bool         # one name of a live process
    names.drop_node(node) -> list[str]          # a node went down: its names, dropped now
    await names.close()

``on_change`` is called synchronously whenever the replica changes, for any reason (a watch
update, a local claim or release, drop_node, the load in ``start``), and never twice in a row
with the same ``(name, pid)``. ``release``/``unregister``/``drop_node`` call it (with None) for
each dropped name before they return, so the router can release names before any EXIT goes out
(SPEC 4 rule 4); the bucket deletes run in the background. It should not raise: an exception
from it propagates out of the call that changed the replica (one from a watch update is logged).

Invariants:

- Every change carries the bucket revision it comes from, and ``_seen[name]`` is the highest
  revision known for the name: anything older (a watch update that was in flight while we
  released the name, a snapshot entry we already deleted) is ignored, so the replica only ever
  moves forward and a released name never comes back from a stale update.
- A delete that could not be sent (NATS down, a timeout) stays in ``_doomed`` and is retried by
  the next :meth:`~GlobalNames.start`; one that loses the race (the key changed since the claim)
  is done: the name already has a later holder or was released by another node.
- A claim in flight for a PID that is released meanwhile is undone when its answer arrives: no
  name is ever left to a PID that ended.
- ``start`` deletes every entry held by a PID of this node that this run's replica does not
  have: it is from an earlier run (whose PIDs are all dead), or a claim of this run whose answer
  and watch update were both lost (its caller was told it failed).

While NATS is unreachable: ``lookup``/``names_of``/``release``/``drop_node`` go on from the
replica; ``claim`` raises :class:`NamesUnavailable` at once (or after the JetStream timeout, when
the connection drops during the call); deletes wait for the next ``start``. While connected but
the bucket cannot answer yet (a fresh NATS cluster still electing its JetStream leader, a
timeout), ``serve`` retries ``start`` with backoff and a ``claim`` waits up to
:data:`READY_WAIT` seconds for it. The bucket is created with :data:`REPLICAS` replicas (a NATS
cluster of three keeps every name through the loss of one server), or one where JetStream
cannot place more (a single server). Background tasks are
owned here, their failures logged as one line on logger ``actord.names``, never raised.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from actord.errors import InvalidError
from actord.ids import check_name, is_name, parse_pid, split_host

log = logging.getLogger("actord.names")

#: seconds a JetStream request (claim, get, delete, bucket lookup) may take
OP_TIMEOUT = 2.0
#: seconds ``start`` waits for the bucket's current entries
LOAD_TIMEOUT = 10.0
#: seconds a claim waits for a bucket that ``serve`` is still retrying to start
READY_WAIT = 5.0
#: seconds between ``serve``'s retries of ``start``: the first, then doubled up to the last
RETRY_DELAYS = (0.5, 4.0)
#: replicas of a new bucket where JetStream can place them (else one)
REPLICAS = 3
#: JetStream's "cannot place that many replicas" error codes (not clustered, too few servers)
_TOO_FEW_SERVERS = (10074, 10023)
#: compare-and-set rounds of one claim against a key that keeps changing under it
CLAIM_ATTEMPTS = 5
#: seconds ``close`` lets deletes in flight finish
CLOSE_WAIT = 1.0
#: JetStream's "wrong last sequence" error codes: a conditional write or delete lost the race
_WRONG_LAST = (10071, 10164)
_DELETED = ("DEL", "PURGE")


class NamesUnavailable(ConnectionError):
    """The name bucket cannot answer now (not started, NATS disconnected, a timeout)."""


def encode_key(name: str) -> str:
    """The bucket key of a name: base64url of its UTF-8, unpadded (only ``[-_A-Za-z0-9]``,
    which NATS KV keys allow; at most 1360 characters for 255 four-byte characters)."""
    return base64.urlsafe_b64encode(name.encode()).rstrip(b"=").decode("ascii")


def decode_key(key: str) -> str | None:
    """The name a bucket key encodes, or None when it is no key :func:`encode_key` makes."""
    try:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        name = raw.decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return name if is_name(name) and encode_key(name) == key else None


def node_of(pid: str) -> str | None:
    """The node a PID's host names (``{n1@app:main|0x...}`` -> ``"n1"``), None if it has none."""
    parsed = parse_pid(pid)
    return None if parsed is None else split_host(parsed[0])[0]


def decode_pid(value: bytes | None) -> str | None:
    """The PID a bucket value holds (a clustered PID, as UTF-8), or None when it is not one."""
    try:
        pid = (value or b"").decode()
    except UnicodeDecodeError:
        return None
    return pid if pid.startswith("{") and node_of(pid) is not None else None


class GlobalNames:
    """The ``global:`` names of one node: a bucket in NATS and its synchronous replica."""

    def __init__(
        self, cluster_name: str, node: str, on_change: Callable[[str, str | None], None]
    ) -> None:
        self.bucket = f"{cluster_name}_names"
        self.node = node
        self._on_change = on_change
        self._held: dict[str, tuple[str, int]] = {}  # name -> (pid, revision)
        self._by_pid: dict[str, set[str]] = {}
        self._seen: dict[str, int] = {}  # name -> highest revision known
        self._doomed: dict[str, int] = {}  # name -> revision of a delete not yet done
        self._inflight: dict[tuple[str, str], int] = {}  # (name, pid) -> claims in flight
        self._cancelled: set[tuple[str, str]] = set()  # in flight, but the pid was released
        self._nc: Any = None
        self._kv: Any = None  # nats.js.kv.KeyValue once started
        self._watcher: Any = None
        self._pump: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None  # serve's retries, until one succeeds
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the replica (synchronous) ---------------------------------------------------------

    def lookup(self, name: str) -> str | None:
        """The PID holding ``name``, as the replica knows it."""
        held = self._held.get(name)
        return None if held is None else held[0]

    def snapshot(self) -> dict[str, str]:
        """Every name the replica has, with its holder."""
        return {name: held[0] for name, held in self._held.items()}

    def names_of(self, pid: str) -> list[str]:
        """The global names the replica has for ``pid`` (sorted)."""
        return sorted(self._by_pid.get(pid, ()))

    def release(self, pid: str) -> list[str]:
        """``pid`` ended: drop its names now (``on_change(name, None)`` each), delete them from
        the bucket in the background; a claim of it still in flight is undone. Its names."""
        for key in self._inflight:
            if key[1] == pid:
                self._cancelled.add(key)
        names = self.names_of(pid)
        for name in names:
            self._release(name)
        return names

    def unregister(self, name: str, pid: str) -> bool:
        """As :meth:`release` for one name: True if ``pid`` held it."""
        if (name, pid) in self._inflight:
            self._cancelled.add((name, pid))
        held = self._held.get(name)
        if held is None or held[0] != pid:
            return False
        self._release(name)
        return True

    def drop_node(self, node: str) -> list[str]:
        """``node`` went down: :meth:`release` every PID of it. The names dropped (sorted)."""
        for key in self._inflight:
            if node_of(key[1]) == node:
                self._cancelled.add(key)
        names = sorted(
            name for pid, held in self._by_pid.items() if node_of(pid) == node for name in held
        )
        for name in names:
            self._release(name)
        return names

    def _release(self, name: str) -> None:
        """Drop a held name from the replica and delete its claim from the bucket (background)."""
        _, rev = self._held[name]
        self._set(name, None)
        self._doom(name, rev)

    def _apply(self, name: str, pid: str | None, rev: int) -> bool:
        """Apply the bucket's state of ``name`` at ``rev`` unless something newer is known."""
        if rev <= self._seen.get(name, 0):
            return False
        self._seen[name] = rev
        self._set(name, None if pid is None else (pid, rev))
        return True

    def _set(self, name: str, held: tuple[str, int] | None) -> None:
        """Change the replica's entry for ``name``; ``on_change`` only if its PID changes."""
        old = self._held.pop(name, None)
        if held is not None:
            self._held[name] = held
        old_pid = None if old is None else old[0]
        new_pid = None if held is None else held[0]
        if old_pid == new_pid:
            return
        if old_pid is not None:
            names = self._by_pid[old_pid]
            names.discard(name)
            if not names:
                del self._by_pid[old_pid]
        if new_pid is not None:
            self._by_pid.setdefault(new_pid, set()).add(name)
        self._on_change(name, new_pid)

    # -- the bucket ------------------------------------------------------------------------

    async def start(self, nc: Any) -> None:
        """Bind (or create) the bucket, load its entries into the replica, watch it for later
        changes, delete this node's stale entries and retry deletes not yet done. Call again
        after a reconnect (it replaces the watcher). Raises :class:`NamesUnavailable`."""
        import nats.errors
        from nats.js.errors import BucketNotFoundError

        await self._stop_watch()
        self._nc, self._kv = nc, None
        js = nc.jetstream(timeout=OP_TIMEOUT)
        try:
            try:
                kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                kv = await self._create(js)
            # the snapshot is in once the watcher has delivered the stream's last revision as
            # of now (not nats-py's "caught up" marker: it is decided from a consumer-info
            # reply, which can overtake entries the server has already pushed)
            last = (await kv.status()).stream_info.state.last_seq
            loaded = asyncio.Event()
            if not last:
                loaded.set()
            self._watcher = await kv.watchall()
            self._pump = asyncio.get_running_loop().create_task(
                self._watch(self._watcher, last, loaded)
            )
            await asyncio.wait_for(loaded.wait(), LOAD_TIMEOUT)
        except (nats.errors.Error, TimeoutError, OSError) as e:
            await self._stop_watch()
            raise NamesUnavailable(f"name bucket {self.bucket}: {_why(e)}") from e
        self._kv = kv
        await asyncio.gather(*(self._delete(name, rev) for name, rev in list(self._doomed.items())))

    async def _create(self, js: Any) -> Any:
        """Create the bucket with :data:`REPLICAS` replicas, or one where JetStream cannot
        place more; bind it instead when another node created it meanwhile."""
        from nats.js.api import KeyValueConfig
        from nats.js.errors import APIError, BadRequestError

        for replicas in (REPLICAS, 1):
            try:
                return await js.create_key_value(
                    KeyValueConfig(bucket=self.bucket, history=1, replicas=replicas))
            except APIError as e:
                if e.err_code in _TOO_FEW_SERVERS and replicas > 1:
                    continue
                if isinstance(e, BadRequestError):  # created meanwhile (other options)
                    return await js.key_value(self.bucket)
                raise
        raise AssertionError("unreachable: the last round returns or raises")

    async def serve(self, nc: Any) -> None:
        """The on-connect hook: :meth:`start` on ``nc``; when the bucket cannot answer yet,
        log it once and keep retrying in the background (backoff :data:`RETRY_DELAYS`) while
        ``nc`` stays connected, so global names come up without a restart. Returns after the
        first attempt; never raises :class:`NamesUnavailable`."""
        if self._starting is not None:
            self._starting.cancel()
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting = asyncio.get_running_loop().create_task(self._keep_starting(nc, first))
        await first

    async def _keep_starting(self, nc: Any, first: asyncio.Future[None]) -> None:
        """:meth:`start` until it succeeds or ``nc`` is not connected; ``first`` is set
        once the first attempt is over (however it ended)."""
        delay, failed = RETRY_DELAYS[0], False
        while True:
            try:
                await self.start(nc)
            except NamesUnavailable as e:
                (log.debug if failed else log.warning)(
                    "names: %s; retrying while connected to NATS", e)
                failed = True
            else:
                if failed:
                    log.info("names: bucket %s ready", self.bucket)
                return
            finally:
                if not first.done():
                    first.set_result(None)
            if not nc.is_connected:
                return  # the reconnect calls serve again
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_DELAYS[1])

    async def close(self) -> None:
        """Stop watching; deletes in flight get :data:`CLOSE_WAIT` seconds. Leaves ``nc`` open."""
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
            self._starting = None
        await self._stop_watch()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_WAIT)
        for task in list(self._tasks):
            task.cancel()
        self._kv = None

    async def claim(self, name: str, pid: str) -> bool:
        """Compare-and-set ``name`` -> ``pid`` (a clustered PID, else INVALID, as is a name that
        is no registry name): True if ``pid`` holds it now (also when it held it already),
        False if another PID does. The replica has the answer before this returns.
        Raises :class:`NamesUnavailable` when the bucket cannot answer: nothing changed, unless
        the claim landed and only its answer was lost; then the watch update still gives the
        name to ``pid`` (``on_change`` says so; ``release(pid)`` drops it as any other), or,
        when that is lost too, the next ``start`` deletes it."""
        import nats.errors

        check_name(name)
        if node_of(pid) is None or not pid.startswith("{"):
            raise InvalidError(f"a global name needs a clustered PID, not {pid!r}")
        held = self._held.get(name)
        if held is not None and held[0] == pid:
            return True
        kv = self._kv
        starting = self._starting
        if kv is None and starting is not None and self._nc is not None and self._nc.is_connected:
            await asyncio.wait({starting}, timeout=READY_WAIT)  # serve is still retrying
            kv = self._kv
        if kv is None or self._nc is None or not self._nc.is_connected:
            raise NamesUnavailable(f"name bucket {self.bucket}: not connected to NATS")
        key = (name, pid)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            rev, holder = await self._cas(kv, encode_key(name), pid)
        except (nats.errors.Error, TimeoutError, OSError) as e:
            raise NamesUnavailable(f"claim of {name!r}: {_why(e)}") from e
        finally:
            cancelled = key in self._cancelled
            left = self._inflight.pop(key) - 1
            if left:
                self._inflight[key] = left
            else:
                self._cancelled.discard(key)
        if holder != pid:
            self._apply(name, holder, rev)
            return False
        if cancelled:  # released while the claim was in flight: undo it
            self._seen[name] = max(rev, self._seen.get(name, 0))
            if self._held.get(name) == (pid, rev):
                self._set(name, None)
            self._doom(name, rev)
            return False
        self._apply(name, pid, rev)
        return True

    async def _cas(self, kv: Any, key: str, pid: str) -> tuple[int, str]:
        """Create ``key`` -> ``pid`` unless a PID holds it: ``(revision, holder)``."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        last = 0  # 0: the key must not exist; else the revision of its tombstone
        for _ in range(CLAIM_ATTEMPTS):
            try:
                return await kv.update(key, pid.encode(), last=last), pid
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except KeyNotFoundError as e:  # deleted or purged since: claim over its tombstone
                last = e.entry.revision if e.entry is not None else 0
                continue
            holder = decode_pid(entry.value)
            if holder is not None:
                return entry.revision, holder
            last = entry.revision  # a value that is no PID holds nothing: claim over it
        raise NamesUnavailable(f"key {key} kept changing during {CLAIM_ATTEMPTS} attempts")

    def _doom(self, name: str, rev: int) -> None:
        """Delete the claim of ``name`` at ``rev`` in the background (retried by ``start``)."""
        if rev > self._doomed.get(name, 0):
            self._doomed[name] = rev
        self._spawn(self._delete(name, rev))

    async def _delete(self, name: str, rev: int) -> None:
        """Delete ``name``'s entry if it is still the one at ``rev``; never raises."""
        from nats.js.errors import APIError

        kv = self._kv
        if kv is None or not self._nc.is_connected:
            return  # stays in _doomed: the next start() retries it
        try:
            await kv.delete(encode_key(name), last=rev)
        except APIError as e:
            if e.err_code not in _WRONG_LAST:
                log.warning("names: delete of %r (revision %d) failed: %s", name, rev, _why(e))
                return
        except Exception as e:  # any failure of the client: log it, retry on the next start
            log.warning("names: delete of %r (revision %d) failed: %s", name, rev, _why(e))
            return
        if self._doomed.get(name) == rev:
            del self._doomed[name]

    async def _watch(self, watcher: Any, last: int, loaded: asyncio.Event) -> None:
        """Apply every bucket update to the replica; set ``loaded`` at revision ``last`` (the
        stream's last when the watch began: every entry before it is the snapshot)."""
        async for entry in watcher:
            if entry is None:  # nats-py's "caught up" marker: unreliable, see start()
                continue
            try:
                self._on_entry(entry, initial=not loaded.is_set())
            except Exception as e:  # the router's on_change failed: keep watching
                log.warning("names: update of key %.40s not applied: %s", entry.key, _why(e))
            if entry.revision >= last or entry.delta == 0:
                loaded.set()

    def _on_entry(self, entry: Any, initial: bool) -> None:
        """One entry of the watcher (``initial``: of the snapshot ``start`` loads)."""
        name = decode_key(entry.key)
        if name is None:
            log.warning("names: ignored key %.40s in %s: no encoded name", entry.key, self.bucket)
            return
        rev = entry.revision
        if entry.operation in _DELETED:
            self._apply(name, None, rev)
            return
        pid = decode_pid(entry.value)
        if pid is None:
            log.warning("names: ignored value %.60r of %r: no PID", entry.value, name)
            return
        if (name, pid) in self._cancelled:  # the answer of an undone claim: nothing to apply
            self._seen[name] = max(rev, self._seen.get(name, 0))
            return
        if (
            initial and node_of(pid) == self.node and self._held.get(name) != (pid, rev)
            and (name, pid) not in self._inflight and rev > self._seen.get(name, 0)
        ):  # held by this node but not claimed by this run: stale, deleted by start()
            self._seen[name] = rev
            self._doomed[name] = rev
            self._set(name, None)
            return
        self._apply(name, pid, rev)

    async def _stop_watch(self) -> None:
        watcher, pump = self._watcher, self._pump
        self._watcher = self._pump = None
        if watcher is not None:
            with contextlib.suppress(Exception):  # a broken connection may raise anything
                await asyncio.wait_for(watcher.stop(), OP_TIMEOUT)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _why(e: BaseException) -> str:
    """One line for a failure: its type and message."""
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
