"""The daemon's log ring: its recent log records, kept structured, for ``actord logs``.

Every record the daemon logs (its own, and each worker's LOG frame, crash reports included)
is kept (an :data:`Entry`); a reader gets it as ``seq`` (1, 2, ... in the order logged),
``ts`` (epoch seconds), ``level``, ``logger``, ``message``, ``pid`` (the actor PID or None),
``host`` and ``worker`` (``host/index``; None for the daemon's own records) and
``traceback`` (or None). The JSON log format writes the same fields (:func:`record_fields`).

Invariants: the ring holds at most ``capacity`` records and :data:`MAX_BYTES` of their text;
the oldest go first, and ``dropped`` counts them. A reader asks for the records after a
cursor (the last ``seq`` it saw) and learns how many it missed (dropped before it read
them): the ring keeps nothing per reader, so a reader that stops reading costs the daemon
nothing. Appending never waits; it wakes the readers waiting for a new record. The ring
changes on the daemon's event loop only (a record from another thread is handed to it).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI reads LEVELS from here: it must not pay for asyncio's import
    import asyncio

#: a record's fields as the ring keeps them (see :func:`_fields`)
Fields = tuple[float, str, int, str, str, str | None, str | None, str | None]
#: one record of the ring: ``(seq, size, fields)``, ``size`` its text plus an overhead; tuples
#: are cheap to build and keep (a record costs the daemon ~8 us more CPU with the ring, of
#: ~50 us); :func:`as_dict` is what readers get
Entry = tuple[int, int, Fields]
#: a record's fields as readers (after ``seq``) and the JSON log format see them
FIELDS = ("ts", "level", "logger", "message", "pid", "host", "worker", "traceback")

#: the most text (messages and tracebacks, in characters) the ring keeps, whatever its capacity
MAX_BYTES = 16 * 1024 * 1024
#: the most records one reply carries
MAX_REPLY_RECORDS = 1000
#: fixed cost counted per record in a reply's size (its keys and numbers)
_RECORD_OVERHEAD = 160
#: the level names a filter takes, lowest first
LEVELS = ("debug", "info", "warning", "error", "critical")

#: the message format of a worker's record as the router logs it: its args are the record's
#: worker, PID, logger and message, its traceback is the ``actord_traceback`` attribute
WORKER_RECORD = "[%s] %s %s: %s"

_formatter = logging.Formatter()
_LEVELNO = logging.getLevelNamesMapping()


def _fields(record: logging.LogRecord) -> Fields:
    """``(ts, level, levelno, logger, message, pid, worker, traceback)`` of a record.
    A worker's forwarded record (the router's LOG frame, :data:`WORKER_RECORD`) carries its
    own worker, PID, logger and message as its args; a daemon record has its own logger and
    message, no PID and no worker."""
    if record.msg is WORKER_RECORD and type(record.args) is tuple and len(record.args) == 4:
        worker, pid, logger, message = record.args
        return (record.created, record.levelname, record.levelno, str(logger), str(message),
                str(pid) if pid else None, str(worker),
                getattr(record, "actord_traceback", None) or None)
    tb = None
    if record.exc_info or record.stack_info:
        tb = _formatter.formatException(record.exc_info) if record.exc_info else ""
        if record.stack_info:
            tb = f"{tb}\n{_formatter.formatStack(record.stack_info)}".lstrip("\n")
    return (record.created, record.levelname, record.levelno, record.name,
            record.getMessage(), None, None, tb)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's fields by name (:data:`FIELDS`): what the JSON log format writes."""
    return _by_name(_fields(record))


def _by_name(f: Fields) -> dict[str, Any]:
    worker = f[6]
    return {"ts": f[0], "level": f[1], "logger": f[3], "message": f[4], "pid": f[5],
            "host": worker.rpartition("/")[0] if worker else None, "worker": worker,
            "traceback": f[7]}


def as_dict(e: Entry) -> dict[str, Any]:
    """An entry as readers get it: ``seq`` and :data:`FIELDS`."""
    return {"seq": e[0], **_by_name(e[2])}


class Filter:
    """Which records a reader wants: a PID, a host (``host`` or ``host/index``), a least
    level; None: any."""

    def __init__(self, pid: str | None = None, host: str | None = None,
                 level: str | None = None) -> None:
        self.pid = pid
        self.host = host
        self.prefix = f"{host}/"
        self.level = _LEVELNO[level.upper()] if level is not None else 0

    def __call__(self, e: Entry) -> bool:
        f = e[2]
        return (f[2] >= self.level
                and (self.pid is None or f[5] == self.pid)
                and (self.host is None or (f[6] is not None and (
                    f[6] == self.host or f[6].startswith(self.prefix)))))


class LogRing(logging.Handler):
    """The ring, and the logging handler that fills it (on the root logger, beside the
    stderr handler)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.entries: collections.deque[Entry] = collections.deque()
        self.size = 0  # text kept (see MAX_BYTES)
        self.dropped = 0  # records dropped to stay within bounds
        self._seq = itertools.count(1)
        self.last = 0  # seq of the newest record (0: none yet)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep records on ``loop`` (the daemon's, on this thread) from then on."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    # -- writing ---------------------------------------------------------------------------------
    def handle(self, record: logging.LogRecord) -> bool:
        """As ``emit``, without the handler's lock (the ring is changed on one thread only)
        and its filters (it has none)."""
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = _fields(record)
        except Exception:  # a record that cannot be formatted: logging's own report
            self.handleError(record)
            return
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self.append(fields)
        else:  # another thread's record: kept by the loop, so a reader never sees it half done
            with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is done
                self._loop.call_soon_threadsafe(self.append, fields)

    def append(self, fields: Fields) -> None:
        """Keep a record (its :func:`_fields`; given its ``seq``), drop the oldest beyond the
        bounds, wake readers. Runs on the daemon's loop once it is bound (before: on the only
        thread there is)."""
        size = len(fields[4]) + len(fields[7] or "") + _RECORD_OVERHEAD
        self.last = seq = next(self._seq)
        entries = self.entries
        entries.append((seq, size, fields))
        self.size += size
        while len(entries) > self.capacity or (self.size > MAX_BYTES and len(entries) > 1):
            self.size -= entries.popleft()[1]
            self.dropped += 1
        if self._waiters:
            for f in self._waiters:
                if not f.done():
                    f.set_result(None)
            self._waiters.clear()

    # -- reading ---------------------------------------------------------------------------------
    def first(self) -> int:
        """The seq of the oldest record kept (``last + 1`` when the ring is empty)."""
        return self.entries[0][0] if self.entries else self.last + 1

    def tail(self, wanted: Filter, lines: int, budget: int) -> list[dict[str, Any]]:
        """The newest ``lines`` records ``wanted`` selects (oldest first), within
        ``budget`` characters and :data:`MAX_REPLY_RECORDS`."""
        out = self._take(reversed(self.entries), wanted, min(lines, MAX_REPLY_RECORDS), budget)
        return [as_dict(e) for e in reversed(out)]

    def after(self, cursor: int, wanted: Filter,
              budget: int) -> tuple[list[dict[str, Any]], int, int]:
        """``(records, next_cursor, missed)``: the records after ``cursor`` that ``wanted``
        selects, in order, within ``budget`` characters and :data:`MAX_REPLY_RECORDS`;
        the cursor to ask from next; how many records after ``cursor`` the ring dropped."""
        first = self.first()
        missed = max(0, first - cursor - 1)
        start = max(cursor + 1, first) - first
        scanned = itertools.islice(self.entries, start, None)
        out: list[dict[str, Any]] = []
        next_cursor = max(cursor, first - 1)
        for e in scanned:
            if wanted(e):
                if len(out) >= MAX_REPLY_RECORDS or (out and budget < e[1]):
                    break
                budget -= e[1]
                out.append(as_dict(e))
            next_cursor = e[0]
        return out, next_cursor, missed

    @staticmethod
    def _take(entries: Iterable[Entry], wanted: Filter, count: int, budget: int) -> list[Entry]:
        out: list[Entry] = []
        for e in entries:
            if len(out) >= count:
                break
            if wanted(e):
                if out and budget < e[1]:
                    break
                budget -= e[1]
                out.append(e)
        return out

    async def wait_new(self, after: int, timeout: float) -> None:
        """Return once a record newer than ``after`` is kept, or after ``timeout`` seconds."""
        if self.last > after or timeout <= 0:
            return
        import asyncio  # loaded long ago in the daemon: see the module's imports

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(future)
