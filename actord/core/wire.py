"""The frame format spoken on every pipe and socket: sans-I/O msgpack encode/decode.

A stream is a plain sequence of msgpack arrays; msgpack is self-delimiting, so the C
``Unpacker`` splits a byte stream into frames without a Python-level length prefix. Every
frame is ``[op, ...fields]`` with an int ``op`` from the tables below. User values (message
payloads) travel pre-encoded as a msgpack ``bin`` so the router forwards them without
decoding them::

    worker -> router   [SEND, dest_pid, from_pid, topic, payload_bin]
    router -> worker   [DELIVER, dest_pid, from_pid, topic, payload_bin]

Size rule (``[daemon] max_frame``): a user value, or the values of one call together (a
spawn's args, context and queued messages), encodes to at most ``max_frame`` bytes; senders
check it before a frame leaves (``ValueTooLarge``). What a frame carries besides those values
(op, PIDs, topic, ids, and texts clipped to ``MAX_TEXT`` characters: error strings, log
records, cancel reasons) fits in ``FRAME_ENVELOPE``, so a decoder accepting ``max_frame +
FRAME_ENVELOPE`` (plus one socket read) never refuses a frame a sender let through.

Invariants: nothing but msgpack is ever decoded (never pickle); a frame that needs more than
that bound buffered (msgpack parses as bytes arrive, so in practice a str or bin that large)
or one that is not an array led by an int op raises ``FrameError``, and the decoder is
unusable after that (the peer is dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

# worker -> router
SEND = 1  # [SEND, dest_pid, from_pid, topic, payload_bin]
CALL = 2  # [CALL, req_id, from_pid, op, args]  args: a map, or a SpawnRequest; -> REPLY
#           (req_id NO_REPLY: a call whose REPLY the worker drops)
EXITED = 3  # [EXITED, pid, result]                              result: an ExitResult
LOG = 4  # [LOG, levelno, logger, message, pid(, traceback)]
UPGRADED = 5  # [UPGRADED, pid, new_id]
STATS = 6  # [STATS, req_id, stats_dict]                       answers STATS_REQ
HELLO = 7  # [HELLO, os_pid]                                    first frame of a worker
STARTED = 23  # [STARTED, pid]        a SPAWN_ACK process's entry loaded and its task created

# router -> worker
DELIVER = 11  # [DELIVER, dest_pid, from_pid, topic, payload_bin]
START = 12  # a Start: [START, pid, id, entry, args, ctx|None, actor|None, scope|None,
#             messages|None(, True)]: a SPAWN_ACK spawn appends True (load the entry, STARTED)
EVENT = 13  # [EVENT, dest_pid, kind, from_pid, result, deadline, reason]
REPLY = 14  # [REPLY, req_id, error_kind_or_None, value_or_message]
NAME = 15  # [NAME, name, pid_or_None]                         registry replica update
KILL = 16  # [KILL, pid, error]                                 terminate now with this error
STATS_REQ = 17  # [STATS_REQ, req_id(, True)]   True: totals only, no process list (metrics)
TOP_REQ = 28  # [TOP_REQ, req_id, n, sort]  -> STATS: totals and the n busiest (actord top)
SHUTDOWN = 18  # [SHUTDOWN]                                        end every process and exit
INIT = 19  # [INIT, init_dict]                                  first frame to a worker
PROCESSES = 20  # [PROCESSES, {id: entry}]                        process table after reload
SECURITY = 21  # [SECURITY, security_dict]                         policies after reload

# worker -> router, from a timer of the worker's event loop (see actord/router/stall.py)
HEARTBEAT = 22  # [HEARTBEAT]                                      every INIT["heartbeat"] s

# actord info (SPEC 12): one process as its worker sees it (see actord/worker/introspect.py)
INFO_REQ = 26  # router -> worker [INFO_REQ, req_id, pid]
INFO = 27  # worker -> router [INFO, req_id, info_dict]  {}: not alive there

# the direct path between workers of different nodes (actord/core/direct.py); one op per job,
# its fields by hop
PEERS = 50  # router -> worker  [PEERS, {node: [incarnation, session]}]    the nodes up now
FENCE = 51  # worker -> router  [FENCE, {node: [session, {instance: batches}]}]
#             router -> router  [FENCE, from_instance, session, {instance: batches}]  (a batch's)
#             router -> worker  [FENCE, node, from_instance, session, batches]
GONE = 52  # router -> router [GONE, instance] (a batch's); router -> worker [GONE, node, instance]
PAIR_BREAK = 53  # worker -> router [PAIR_BREAK, node, session, why]   node "": every pair up
DIRECT_READY = 54  # worker -> router [DIRECT_READY]   it listens on its subject: spawn on it
DEAD_LETTERS = 55  # worker -> router [DEAD_LETTERS, n]   messages to or from other nodes' workers

#: The request id of a CALL nobody waits for (abandoning an exec: its child's CANCEL). The
#: router answers it like any call; the worker's REPLY handler finds no future for it and drops
#: the reply (real request ids count up from 1).
NO_REPLY = 0


class SpawnRequest(NamedTuple):
    """The arguments of a "spawn" CALL (and of ``Router.spawn``): one positional array, not a
    map (every spawn pays for each key to be packed, unpacked and looked up); a NamedTuple
    packs to the same msgpack array as a list. ``None`` means "not given"; an actor or scope
    not given is the caller's (the router knows it). Built by :func:`spawn_request` (off the
    hot path; ``SpawnBuilder`` makes the :data:`SpawnFields` list); every request enters the
    router through its gate (``actord.router.gate.check_spawn_request``)."""

    id: str
    host: str
    args: list[Any]
    flags: int  # SPAWN_* bits below
    ctx: dict[str, Any] | None
    actor: dict[str, Any] | None  # {"id": str, "meta": dict}
    scope: list[str] | None
    name: str | None  # registered for the child before it runs (spawn-or-signal)
    messages: list[list[Any]] | None  # [topic, value] pairs queued before it runs


#: A spawn request on the spawn path: a :class:`SpawnRequest`, or the list of its fields in
#: the same order, which is what ``SpawnBuilder`` makes and a peer's request decodes to. It is
#: read by unpacking, never by attribute (the type checker refuses attribute reads on it), so
#: no spawn pays for making a NamedTuple and unpacking it by the generic path a tuple
#: subclass takes (about 5% of the router's share of a spawn, measured).
SpawnFields = SpawnRequest | list[Any]

SPAWN_MONITOR = 1  # flags: monitor the child before it runs
SPAWN_LINK = 2  # link to the child before it runs
SPAWN_EXEC = 4  # an exec child: its result goes back to the caller as EV_EXEC
SPAWN_CONTEXT = 8  # ctx was set with with_context (needs process.context)
SPAWN_SECURITY = 16  # actor/scope set with with_actor/with_scope (needs process.security)
SPAWN_ACK = 32  # the target worker loads the entry before the task starts and says STARTED
#                 (or the process ends at once with the load error): services use it


def spawn_request(
    id: str,
    host: str,
    args: list[Any] | None = None,
    flags: int = 0,
    *,
    ctx: dict[str, Any] | None = None,
    actor: dict[str, Any] | None = None,
    scope: list[str] | None = None,
    name: str | None = None,
    messages: list[list[Any]] | None = None,
) -> SpawnRequest:
    """A spawn request, for callers off the hot path (control socket, services)."""
    return SpawnRequest(id, host, args or [], flags, ctx or None, actor, scope, name,
                        messages or None)


class Start(NamedTuple):
    """The START frame: the router tells a worker to run a process (positional, like the
    spawn request: no option map to build in the router and decode in the worker). The router
    builds the list it packs to (``actord.router.spawns``: one per spawn, no NamedTuple made),
    the worker unpacks it in this order (``actord.worker.frames``). A SPAWN_ACK spawn's frame
    has one more field, :data:`START_ACK`: the worker loads the entry first and answers
    STARTED."""

    op: int  # START
    pid: str
    id: str
    entry: str  # "module:function"
    args: list[Any]
    ctx: dict[str, Any] | None
    actor: dict[str, Any] | None
    scope: list[str] | None
    messages: list[list[Any]] | None


#: the fields of a START frame without the SPAWN_ACK marker
START_FIELDS = len(Start._fields)
#: appended to the START frame of a SPAWN_ACK spawn
START_ACK = (True,)


#: The result of a process, in EXITED frames, EXIT and LINK_DOWN events, exit callbacks and
#: exec replies: ``{"value": v}`` for a normal end, ``{"error": "ExcType: message"}`` for an
#: abnormal one. Build and read it with the functions below.
ExitResult = dict[str, Any]


def exit_value(value: Any) -> ExitResult:
    """The result of a process that returned ``value``: a normal end."""
    return {"value": value}


def exit_error(error: str) -> ExitResult:
    """The result of a process that ended with ``error``: an abnormal end."""
    return {"error": error}


def is_abnormal(result: ExitResult) -> bool:
    """True for an abnormal end (an error), False for a returned value."""
    return "error" in result


def error_of(result: ExitResult) -> str:
    """The error of an abnormal end (``KeyError`` for a normal one: ask :func:`is_abnormal`)."""
    error: str = result["error"]
    return error


def value_of(result: ExitResult) -> Any:
    """The value a process returned; None for an abnormal end."""
    return result.get("value")


# event kinds inside EVENT frames
EV_EXIT = "pid.exit"
EV_LINK_DOWN = "pid.link.down"
EV_CANCEL = "pid.cancel"
EV_EXEC = "exec.exit"  # runtime-internal: the result of an exec child, never shown to actors

DEFAULT_MAX_FRAME = 8 * 1024 * 1024
#: bytes a frame may carry beyond ``max_frame`` of user values: its envelope (see the module
#: docstring); a frame whose envelope is larger is refused by its sender
FRAME_ENVELOPE = 512 * 1024
#: what a decoder buffers beyond its largest frame: the rest of the socket read that completed
#: it (asyncio and uvloop read at most 256 KiB at a time)
READ_SLACK = 512 * 1024
#: characters kept of a text that travels in a frame's envelope (error strings, log records,
#: cancel reasons); 64 Ki characters are at most 256 KiB of UTF-8
MAX_TEXT = 64 * 1024
#: characters of topic plus destination a message may carry (at most 4 bytes each in UTF-8:
#: well inside ``FRAME_ENVELOPE``)
MAX_ADDRESS = 64 * 1024
#: A decoder's initial buffer. msgpack's Unpacker defaults to ``min(max_buffer_size, 1 MiB)``
#: and appends every read at the tail of that buffer, moving the unread rest to the front only
#: once the tail reaches the end, so every connection's RSS crept up to the whole 1 MiB at the
#: rate it read (the router's soak slope: its control-socket and observer-worker decoders, ~97
#: KiB/min between them, plateauing when full). The buffer still grows when one read needs
#: more (to twice that, at most ``max_frame``) and keeps that size; the memory is bounded
#: either way, this only makes it small where the traffic is.
DECODER_BUFFER = 64 * 1024


class FrameError(ValueError):
    """Bytes from a peer that are not a valid frame."""


class ValueTooLarge(ValueError):
    """A value whose encoding is larger than ``max_frame``; ``str()`` is the user's message."""

    def __init__(self, size: int, max_frame: int) -> None:
        super().__init__(too_large(size, max_frame))
        self.size = size


def too_large(size: int, max_frame: int) -> str:
    """The one wording of SPEC 2's "message too large"."""
    return f"message too large: {size} bytes > max_frame ({max_frame})"


def check_size(data: bytes, max_frame: int) -> bytes:
    """``data`` (an encoded value) if it fits in ``max_frame``, else ``ValueTooLarge``."""
    if len(data) > max_frame:
        raise ValueTooLarge(len(data), max_frame)
    return data


def address_too_large(topic: str, dest: str) -> str:
    """The "message too large" error of a topic plus destination over ``MAX_ADDRESS``."""
    n = len(topic) + len(dest)
    return f"message too large: topic and destination of {n} characters > {MAX_ADDRESS}"


def clip_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


def new_packer() -> msgpack.Packer:
    """A reusable packer: bin type for bytes, no tuple/list distinction (tuples arrive as lists)."""
    return msgpack.Packer(use_bin_type=True, autoreset=True)


_pack: Callable[[Any], bytes] = new_packer().pack
# One reused packer for user values: ``msgpack.packb`` builds (and frees) a Packer and its
# buffer on every call, which was 16% of a same-worker send. Sharing it is safe: packing
# runs no Python code (no ``default`` hook), and a failed pack resets the buffer.
_pack_value: Callable[[Any], bytes] = new_packer().pack
_unpackb = msgpack.unpackb

# Limits of the msgpack format, checked by ``copy_value``'s fast path as packing would.
#: the ints msgpack carries
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
_MAX_LEN = 2**32 - 1


def encode_value(value: Any) -> bytes:
    """Encode a user value; ``TypeError`` for anything that is not a msgpack type."""
    return _pack_value(value)


def decode_value(data: bytes) -> Any:
    """Decode a user value encoded by :func:`encode_value`."""
    return _unpackb(data, raw=False, strict_map_key=False)


def copy_value(value: Any, max_size: int = _MAX_LEN) -> Any:
    """What a receiver gets for ``value``: equal to ``decode_value(encode_value(value))``.

    Raises as ``encode_value`` does for a non-msgpack value, and ``ValueTooLarge`` when that
    encoding is over ``max_size`` bytes (a str or bytes within ``max_size`` - 5, the largest
    msgpack header, is known to fit without encoding it). An immutable scalar (None,
    bool, int, float, str, bytes: exact types only, within msgpack's limits) is returned
    as is: a copy of it would be indistinguishable, and skipping the encode/decode round
    trip is most of the cost of a same-worker send. Containers are still deep-copied
    through msgpack, so sender and receiver never share a mutable object.
    """
    t = type(value)
    if t is str:
        # non-ASCII text may hold lone surrogates, which msgpack refuses: let it decide
        if len(value) <= max_size - 5 and value.isascii():
            return value
    elif t is int:
        if MIN_INT <= value <= MAX_INT:
            return value
    elif value is None or t is float or t is bool or (t is bytes and len(value) <= max_size - 5):
        return value
    data = _pack_value(value)
    if len(data) > max_size:
        raise ValueTooLarge(len(data), max_size)
    return _unpackb(data, raw=False, strict_map_key=False)


def encode(frame: list[Any] | tuple[Any, ...]) -> bytes:
    """One frame's bytes (a tuple, e.g. a :class:`Start`, packs as the list would)."""
    return _pack(frame)


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` returns the complete frames seen so far.

    It accepts a frame of ``max_frame + FRAME_ENVELOPE`` bytes fed in reads of up to
    ``READ_SLACK`` bytes (the buffer holds one unfinished frame plus one read).
    """

    __slots__ = ("_limit", "_unpacker")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._limit = max_frame + FRAME_ENVELOPE + READ_SLACK
        self._unpacker = msgpack.Unpacker(
            raw=False,
            strict_map_key=False,
            max_buffer_size=self._limit,
            read_size=min(max_frame, DECODER_BUFFER),
        )

    def feed(self, data: bytes) -> list[list[Any]]:
        """Frames completed by ``data``; raises ``FrameError`` on malformed or oversized input."""
        try:
            self._unpacker.feed(data)
            frames = list(self._unpacker)
        except msgpack.BufferFull:
            raise FrameError(f"frame too large: over {self._limit} bytes") from None
        except (ValueError, TypeError, msgpack.UnpackException) as e:  # TypeError: a map key
            # that is a list or map (unhashable), e.g. b"\x91\x81\x91\x01\x02"
            raise FrameError(f"{type(e).__name__}: {e}") from None
        for frame in frames:
            if type(frame) is not list or not frame or type(frame[0]) is not int:
                raise FrameError(f"not a frame: {str(frame)[:80]}")
        return frames

# control socket (CLI <-> daemon)
CTL_REQUEST = 30  # [CTL_REQUEST, req_id, command, args_dict]
CTL_REPLY = 31  # [CTL_REPLY, req_id, error_kind_or_None, value_or_message]

# tracing one process (SPEC 12, ``actord trace``): records batched per loop tick by the worker
# (actord/worker/trace.py), fanned out by the router to its trace sessions (actord/router/traces.py)
TRACE = 40  # worker -> router  [TRACE, pid, records, dropped]   records: actord.core.trace
TRACE_ON = 41  # router -> worker  [TRACE_ON, pid]                  start recording pid
TRACE_OFF = 42  # router -> worker [TRACE_OFF, pid]                 stop recording pid
