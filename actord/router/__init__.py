"""The router: the node's single owner of the PID table, name registry and link/monitor graph.

It runs in the daemon process. Workers send it frames; it routes messages and events between
workers, answers calls (spawn, terminate, cancel, monitor, link, registry), and turns every
process end into names released, then one EXIT per monitor, then (abnormal ends only) one
LINK_DOWN per link, in that order (SPEC 4.4). Control-socket commands use the same methods
with the empty caller ``""``.

One module per job; :class:`Router` (``core.py``) only composes them::

    core.py      Router: the shared tables, created once; attach, worker down, reload
    dispatch.py  on_frame: SEND inline (the hot path), every other op to its job
    calls.py     the call table: CALL -> one REPLY; terminate, cancel, monitor, link, names
    gate.py      permission checks of calls and spawns, evaluator cache, spawn request checks
    spawns.py    a spawn request -> PID, entry, edges, name, START
    exits.py     a process end -> names, EXIT, LINK_DOWN, exec children, exit/start callbacks;
                 EXITED to other nodes, a node's end as the end of its processes
    remote.py    calls on other nodes' processes, frames from other nodes, global: names
    stats.py     the one STATS fan-out, for ps and for metrics
    traces.py    ``actord trace`` sessions: TRACE_ON/OFF, TRACE records to bounded queues
    slots.py     WorkerLink, ProcEntry: host -> worker slots, and sending to what they hold
    stall.py     heartbeats: which workers' event loops are blocked
    nodes.py     NodeLink ([cluster] only): the NATS connection, node heartbeats, who is up,
                 batches to and from other nodes, pair sessions and breaks
    global_names.py  global: names in a JetStream KV bucket, with a local replica

Node links (SPEC 11) sit beside the worker links: ``nodes.py`` moves heartbeats and batches
in and out; the node states and their moves (up, down, incarnations) are pure code in
``actord/core/nodes.py``, the batch format, its boundary check and the pair sessions in
``actord/core/batches.py``. SENDs to another node's PID leave the hot path's miss branch for
``nodes.py``; calls on another node's process leave the call table for ``remote.py``, whose
target node installs its side of an edge first (see ``remote.py``); an end reaches other
nodes as one EXITED (``exits.py``).

Spawn handshake (the child's edges exist before its first instruction runs)::

    caller worker            router                        target worker
      CALL spawn  ------->   check id/host, allocate PID
                             install monitor/link, claim name
                             NAME (broadcast to all workers)
                             START  ------------------------>  create task
      <-------- REPLY pid
                             (SPAWN_ACK: the entry is loaded first, then)  <--  STARTED

Invariant: order per sender/receiver pair is kept because each worker pipe is FIFO and the
router forwards frames in the order it reads them; a name update is broadcast before the
reply that lets anyone learn of it; no frame the router makes breaks ``wire``'s size rule (a
START too large is refused before any state changes, error texts are clipped).
"""

from actord.router.core import Router
from actord.router.slots import ProcEntry, WorkerLink

__all__ = ["ProcEntry", "Router", "WorkerLink"]
