"""The chat upstream's sockets on plain asyncio: an httpcore network backend without anyio.

httpx (through httpcore) reads every piece of a streamed reply through anyio: each read enters
and leaves a cancel scope for its timeout and parks on an anyio event; that was about a
third of the upstream read path and a sixth of the event loop's work per relayed chunk.
``AsyncioBackend`` gives httpcore the same streams on an ``asyncio.Protocol``: a read that
finds bytes waiting returns them at once, and one that must wait arms one timer handle for
its timeout. Everything else stays httpx's and httpcore's: the connection pool (keep-alive
reuse), TLS (``loop.start_tls``), proxies, the request and the HTTP/1.1 parsing. Timeouts
keep their meaning (connect, write, and read: the longest silence between two reads) and
failures their httpcore types (``ConnectError``, ``ReadTimeout`` …), which httpx maps as before.

Used by the upstream adapter's client (``openai_compatible._client``) unless
``RIVYA_API["CHAT_UPSTREAM_ASYNCIO_NETWORK"]`` is False, which keeps httpcore's own
(anyio) backend. ``tests/rivya_api/chat/test_asyncio_network.py`` runs the same exchanges
through both.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import socket
import ssl
from asyncio import staggered
from collections.abc import Iterable
from typing import Any

import httpcore

# Unread bytes a connection buffers before it stops reading from the socket (back-pressure).
HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers what arrives; wakes the one reader waiting for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for bytes
        self.drained: asyncio.Future[None] | None = None  # a write waiting for the socket
        self.paused = False  # the transport's write buffer is full
        self.reading_paused = False  # HIGH_WATER bytes wait unread
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _wait(protocol: _Protocol, future: asyncio.Future[None], timeout: float | None) -> None:
    """Await ``future``; TimeoutError after ``timeout`` seconds (one timer handle, no scope)."""
    timer = None if timeout is None else protocol.loop.call_later(timeout, _expire, future)
    try:
        await future
    finally:
        if timer is not None:
            timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: Any, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self.protocol
        if not protocol.buffer and not protocol.eof:
            protocol.waiter = protocol.loop.create_future()
            try:
                await _wait(protocol, protocol.waiter, timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading from the upstream") from None
            finally:
                protocol.waiter = None
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.reading_paused and len(protocol.buffer) <= HIGH_WATER:
                protocol.reading_paused = False
                protocol.transport.resume_reading()
            return data
        if protocol.error is not None:  # reset by the peer: anyio raises here too
            raise httpcore.ReadError(str(protocol.error) or repr(protocol.error))
        return b""  # the peer closed its side

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self.protocol
        if self.transport.is_closing():
            raise httpcore.WriteError("the upstream connection is closed")
        self.transport.write(buffer)
        if protocol.paused:
            protocol.drained = protocol.loop.create_future()
            try:
                await _wait(protocol, protocol.drained, timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing to the upstream") from None
            finally:
                protocol.drained = None
            if protocol.error is not None:
                raise httpcore.WriteError(str(protocol.error) or repr(protocol.error))

    async def aclose(self) -> None:
        self.transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = self.protocol.loop
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self.transport, self.protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self.transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self.transport.close()
            raise httpcore.ConnectError(str(exc) or repr(exc)) from None
        self.protocol.transport = transport
        return AsyncioStream(transport, self.protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self.transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        if info == "socket":
            return self.transport.get_extra_info("socket")
        if info == "is_readable":  # an idle connection the peer closed (or wrote to): not reusable
            return bool(self.protocol.buffer) or self.protocol.eof or self.transport.is_closing()
        return None


# Happy Eyeballs (RFC 8305), as anyio connects: the next address is tried once the one before
# has been silent this long, so one unresponsive address (a dead AAAA record) costs 250 ms, not
# the connect timeout. uvloop's create_connection has no such parameter, so it is done here.
NEXT_ADDRESS_AFTER = 0.25


def _interleaved(infos: list[tuple]) -> list[tuple]:
    """Addresses alternating between families, each family in the resolver's order."""
    families: dict[int, list[tuple]] = {}
    for info in infos:
        families.setdefault(info[0], []).append(info)
    rounds = itertools.zip_longest(*families.values())
    return [info for group in rounds for info in group if info is not None]


async def _connect_one(loop: asyncio.AbstractEventLoop, info: tuple, local_address: str | None) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if local_address:
            sock.bind((local_address, 0))
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_staggered(
    loop: asyncio.AbstractEventLoop, host: str, port: int, local_address: str | None
) -> socket.socket:
    infos = _interleaved(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    if not infos:
        raise OSError(f"no address for {host}")
    attempts = [functools.partial(_connect_one, loop, info, local_address) for info in infos]
    sock, _, errors = await staggered.staggered_race(attempts, NEXT_ADDRESS_AFTER)
    if sock is None:
        raise next((e for e in errors if e is not None), OSError(f"could not connect to {host}:{port}"))
    return sock


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on plain asyncio (see the module docstring)."""

    def __init__(self) -> None:
        self._unix = httpcore.AnyIOBackend()  # Unix sockets are not the upstream's case: httpcore's own

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                sock = await _connect_staggered(loop, host, port, local_address)
                transport, protocol = await loop.create_connection(lambda: _Protocol(loop), sock=sock)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or repr(exc)) from None
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._unix.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def use_asyncio_network(client: Any) -> Any:
    """Give ``client`` (an ``httpx.AsyncClient``) this backend for its direct connections; returns it.

    Proxied routes (httpx mounts them from the environment) keep httpcore's own backend.
    """
    pool = client._transport._pool  # httpx.AsyncHTTPTransport's httpcore.AsyncConnectionPool
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpcore's pool has no _network_backend: update rivya_api.chat.providers.asyncio_network")
    pool._network_backend = AsyncioBackend()
    return client
