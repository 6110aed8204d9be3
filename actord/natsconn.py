"""How a clustered node's processes connect to NATS: the options the router's node link and
every worker's direct link share (servers, credentials, TLS, reconnect and ping rules).

``nats`` is imported by :func:`connect`, never at import time, so a single node never loads
it. Invariant: both kinds of connection see a dead server, and reconnect, the same way.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from actord.core.config import ClusterConfig
from actord.errors import ConfigError


def tls_context(cluster: ClusterConfig, source: str) -> ssl.SSLContext | None:
    """The TLS context of ``cluster.tls`` (None without); a file that cannot be loaded is a
    ConfigError naming ``source`` (the config file)."""
    tls = cluster.tls
    if tls is None:
        return None
    try:
        context = ssl.create_default_context(cafile=tls.ca)
        if tls.cert is not None:
            context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise ConfigError(f"{source}: cluster.tls: cannot load: {e}") from None
    return context


async def connect(cluster: ClusterConfig, name: str, tls: ssl.SSLContext | None,
                  error_cb: Callable[[Exception], Awaitable[None]],
                  disconnected_cb: Callable[[], Awaitable[None]],
                  reconnected_cb: Callable[[], Awaitable[None]]) -> Any:
    """A nats-py connection to the cluster's servers that never gives up reconnecting and
    notices a dead server within ~2 s (``name`` is what the server shows for it)."""
    import nats  # only a clustered node loads nats-py

    options: dict[str, Any] = {
        "servers": list(cluster.servers),
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,  # never give up: a node keeps trying to rejoin
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "ping_interval": 1,
        "max_outstanding_pings": 2,
        "error_cb": error_cb,
        "disconnected_cb": disconnected_cb,
        "reconnected_cb": reconnected_cb,
    }
    if cluster.credentials is not None:
        options["user_credentials"] = cluster.credentials
    if tls is not None:
        options["tls"] = tls
    return await nats.connect(**options)


__all__ = ["connect", "tls_context"]
