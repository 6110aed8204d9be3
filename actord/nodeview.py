"""What the node's edges (the control socket, the metrics endpoint) need of the daemon.

:class:`~actord.daemon.Daemon` composes the router, the services and the worker pool, and
hands itself to its edges as one of these narrow views; the edges import this module, never
the daemon, so the daemon can import them without a circle. Invariant: a view exposes only
what an edge reads or asks for; it adds no behaviour of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actord.core.config import Config
    from actord.logring import LogRing
    from actord.pool import WorkerPool
    from actord.router import Router
    from actord.services import ServiceManager


class NodeView(Protocol):
    """The node as the metrics endpoint reads it: its name, age, router and services."""

    @property
    def node(self) -> str:
        """The node's name, ``actord@<hostname>``."""

    @property
    def started_at(self) -> float:
        """When the daemon started (``time.time()``)."""

    @property
    def router(self) -> Router:
        """The router: worker slots, processes, registry, security gate, counters."""

    @property
    def services(self) -> ServiceManager:
        """The supervised services."""


class ControlledNode(NodeView, Protocol):
    """The node as the control socket drives it: the view plus its config and its controls."""

    @property
    def config(self) -> Config:
        """The running config (replaced by a successful reload)."""

    @property
    def ready(self) -> bool:
        """True once the workers started and the auto-start services run."""

    @property
    def logs(self) -> LogRing:
        """The daemon's recent log records."""

    @property
    def pool(self) -> WorkerPool | None:
        """The worker pool; None until the workers are started."""

    async def reload(self) -> dict[str, Any]:
        """Re-read the config and apply what changed; the summary (INVALID if refused)."""

    def request_stop(self, why: str) -> None:
        """Begin the shutdown sequence (idempotent)."""

    def stop_bound(self) -> float:
        """Seconds the shutdown sequence can take at most."""
