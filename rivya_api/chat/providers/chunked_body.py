"""The chat upstream's chunked reply read straight off its socket: no h11 event per chunk.

httpx reads a streamed body through httpcore, which asks h11 for the next event of every piece:
six generator layers and h11's state machine per SSE chunk, about a third of the event loop's
work per relayed chunk. Once httpx has the reply's head (h11 parsed it, as before), ``raw_body``
reads the body's chunked transfer coding itself, from the connection's ``AsyncioStream``
(``asyncio_network``): each read's bytes, less the chunk framing, in one piece. At the last chunk
it hands h11 the rest (the last chunk's line, the trailers and what follows), so h11 and httpcore
see a complete reply and the connection goes back to the pool as before. Failures keep httpx's types: a read timeout is
``httpx.ReadTimeout``, a reset ``httpx.ReadError``, a body cut short or a bad chunk line
``httpx.RemoteProtocolError`` (what the adapter maps to its errors).

Only a reply with ``Transfer-Encoding: chunked``, no ``Content-Encoding`` and a connection on the
asyncio backend whose h11 has read nothing of the body is read this way; any other (a
``Content-Length`` body, gzip, a proxy, httpcore's own backend, an httpx or httpcore release whose
insides moved) is read through httpx as before (``raw_body`` returns None).
``RIVYA_API["CHAT_UPSTREAM_RAW_BODY"] = False`` reads every reply through httpx.
``tests/rivya_api/chat/test_chunked_body.py`` reads the same byte streams both ways.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpcore
import httpx

from rivya_api.chat.providers.asyncio_network import AsyncioStream
from rivya_api.conf import api_settings

READ_BYTES = 64 * 1024
# A chunk-size line as h11 accepts it (RFC 9112 7.1): hex digits, optional extensions.
CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
LONGEST_LINE = 64 * 1024  # h11's own limit on a line it buffers


def _connection(response: httpx.Response) -> Any:
    """httpcore's HTTP/1.1 connection under ``response``, if its insides are where this module expects."""
    try:
        pool_stream = response.stream._stream._httpcore_stream  # httpx's bound + response streams
        return pool_stream._stream._connection  # httpcore's pool stream → the connection's byte stream
    except AttributeError:
        return None


def raw_body(response: httpx.Response) -> AsyncIterator[bytes] | None:
    """The reply's body bytes read off the socket; None where it must be read through httpx."""
    if not api_settings.CHAT_UPSTREAM_RAW_BODY or response.is_stream_consumed:
        return None
    headers = response.headers
    if headers.get("transfer-encoding", "").lower() != "chunked" or headers.get("content-encoding", "identity") != (
        "identity"
    ):
        return None
    connection = _connection(response)
    state = getattr(connection, "_h11_state", None)
    network = getattr(connection, "_network_stream", None)
    reader = getattr(state, "_reader", None)
    if not (
        isinstance(state, h11.Connection)
        and isinstance(network, AsyncioStream)
        and state.their_state is h11.SEND_BODY
        and not state.trailing_data[1]  # h11 has not seen the peer close (it then reads the rest itself)
        and type(reader).__name__ == "ChunkedReader"
        and getattr(reader, "_bytes_in_chunk", None) == 0
        and getattr(reader, "_bytes_to_discard", None) == b""
        and getattr(reader, "_reading_trailer", None) is False
    ):
        return None
    timeout = response.request.extensions.get("timeout", {}).get("read")
    response.is_stream_consumed = True  # as httpx's own iterators mark it
    return _chunks(state, network, timeout, response.request)


async def _read(network: AsyncioStream, timeout: float | None) -> bytes:
    try:
        data = await network.read(READ_BYTES, timeout)
    except httpcore.ReadTimeout as exc:
        raise httpx.ReadTimeout(str(exc)) from None
    except httpcore.ReadError as exc:
        raise httpx.ReadError(str(exc)) from None
    if not data:
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body (incomplete chunked read)"
        )
    return data


async def _chunks(
    state: h11.Connection, network: AsyncioStream, timeout: float | None, request: httpx.Request
) -> AsyncIterator[bytes]:
    try:
        buffer = bytearray(state.trailing_data[0])  # what h11 read past the head
        if buffer:
            state._receive_buffer._extract(len(buffer))
        need = 0  # bytes of the current chunk still to come; -1: its CRLF; 0: a size line
        while True:
            out = bytearray()
            position = 0
            while True:
                if need > 0:
                    take = buffer[position : position + need]
                    out += take
                    position += len(take)
                    need -= len(take)
                    if need:
                        break
                    need = -1
                if need == -1:
                    if len(buffer) - position < 2:
                        break
                    if buffer[position : position + 2] != b"\r\n":
                        raise httpx.RemoteProtocolError("malformed chunk footer")
                    position += 2
                    need = 0
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    if len(buffer) - position > LONGEST_LINE:
                        raise httpx.RemoteProtocolError("chunk size line too long")
                    break
                match = CHUNK_SIZE.fullmatch(buffer, position, end)
                if match is None:
                    raise httpx.RemoteProtocolError("illegal chunk header")
                need = int(match[1], 16)
                if need == 0:  # the last chunk: trailers (ignored, as httpx does), then a blank line
                    del buffer[:position]
                    if out:
                        yield bytes(out)
                    await _finish(state, network, buffer, timeout)
                    return
                position = end + 2
            del buffer[:position]
            if out:
                yield bytes(out)
            buffer += await _read(network, timeout)
    except httpx.TransportError as exc:  # the request, as httpx's own errors carry it
        exc.request = request
        raise


async def _finish(state: h11.Connection, network: AsyncioStream, buffer: bytearray, timeout: float | None) -> None:
    """Hand h11 the last chunk's line and the trailers: it reads them to the end as through httpx.

    h11 was left waiting for a chunk-size line, so it parses (and checks) the rest exactly as it
    would have: bare-LF line endings, trailer syntax, the size limit; what follows the end stays in
    its buffer, the next reply's.
    """
    data = bytes(buffer)  # "0[;ext]\r\n", trailer lines, a blank line, maybe more
    while True:
        state.receive_data(data)
        try:
            event = state.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None
        if isinstance(event, h11.EndOfMessage):
            return
        if event is not h11.NEED_DATA:  # cannot happen: h11 was waiting for a chunk line
            raise httpx.RemoteProtocolError(f"unexpected end of the reply: {event!r}")
        data = await _read(network, timeout)
