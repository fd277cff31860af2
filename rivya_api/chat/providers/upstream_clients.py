"""The gateway's upstream HTTP clients for one event loop, several of them when the pool is sharded.

httpcore 1.0.9's connection pool does its bookkeeping (``_assign_requests_to_connections``) on
every request and every response end, and that pass is quadratic in the pool's open connections
(for each idle connection it counts the idle ones again; encode/httpcore#1035, open). With 200
streams open on warm keep-alive connections through one client, the adapter cost 4.8 ms of CPU an
event; spread over ``SHARDS`` clients, 0.36 ms (``bench/chat_upstream_read.py``), each pool holding
a sixteenth of the connections. A burst that starts from a cold pool has few idle connections and
showed no difference through the gateway.

A turn takes the least busy client (fewest turns streaming through it), the first one on a tie.
So sequential turns, and any concurrency up to what one client is streaming, all go to the first
client and keep reusing its warm keep-alive connection; only concurrent turns spread. Each client
keeps a proportional share of the keep-alive connections, so the set keeps about as many as one
client did.

``RIVYA_API["CHAT_UPSTREAM_SHARDED_POOL"] = False``: one client, as before.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

SHARDS = 16
KEEPALIVE_CONNECTIONS = 100  # kept open between turns, over all of a loop's clients


def limits(shards: int) -> httpx.Limits:
    """Any number of concurrent streams; a proportional share of the keep-alive connections."""
    return httpx.Limits(max_connections=None, max_keepalive_connections=math.ceil(KEEPALIVE_CONNECTIONS / shards))


class UpstreamClients:
    """One event loop's upstream clients, lent out one a turn (see the module docstring)."""

    def __init__(self, make_client: Callable[[httpx.Limits, ssl.SSLContext], httpx.AsyncClient], shards: int) -> None:
        # One TLS context for all: each client loading the CA bundle itself took ~0.1 s (1.5 s for 16).
        ssl_context = httpx.create_ssl_context()
        self.clients = [make_client(limits(shards), ssl_context) for _ in range(shards)]
        self._busy = [0] * shards  # turns streaming through each client

    @property
    def is_closed(self) -> bool:
        return any(client.is_closed for client in self.clients)

    @contextmanager
    def lease(self) -> Iterator[httpx.AsyncClient]:
        """The least busy client, the first on a tie, counted busy until the turn is done with it."""
        busy = self._busy
        index = busy.index(min(busy))
        busy[index] += 1
        try:
            yield self.clients[index]
        finally:
            busy[index] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
