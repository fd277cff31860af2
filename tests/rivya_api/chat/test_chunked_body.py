"""The upstream reply's chunked body read off the socket (chunked_body) against httpx's own reading.

A stand-in server sends scripted bytes, split wherever the test says (each piece its own read);
the same exchange is read with ``CHAT_UPSTREAM_RAW_BODY`` on and off, and must give the same SSE
lines or the same error, and leave the connection reusable the same way.
"""

from __future__ import annotations

import asyncio
import gzip
import random

import httpx
import pytest

from rivya_api.chat.providers.asyncio_network import use_asyncio_network
from rivya_api.chat.providers.chunked_body import raw_body
from rivya_api.chat.providers.openai_compatible import sse_lines

EVENTS = [
    'data: {"choices":[{"delta":{"content":"héllo ✓"}}]}\n\n',
    ": a comment\r\n\r\n",
    'data: {"choices":[{"delta":{"content":"😀 wörld"}}]}\r\n\r\n',
    "data: [DONE]\n\n",
]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def chunked(parts: list[bytes], *, extension: bytes = b"", trailers: bytes = b"", end: bytes = b"\r\n") -> bytes:
    body = b"".join(b"%X%s\r\n%s\r\n" % (len(part), extension, part) for part in parts)
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailers + end


def sse_bytes() -> bytes:
    return "".join(EVENTS).encode()


def utf8_split_parts() -> list[bytes]:
    """The body in chunks whose boundaries fall inside multi-byte characters."""
    data = sse_bytes()
    cuts = [data.index("é".encode()) + 1, data.index("✓".encode()) + 2, data.index("😀".encode()) + 3]
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def pieces(data: bytes, seed: int | None) -> list[bytes]:
    """``data`` cut at random places (seed), or byte by byte (None)."""
    if seed is None:
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 12))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]


FULL = chunked([e.encode() for e in EVENTS])
CASES = {  # name: (response bytes, how to cut them: a seed or None for byte by byte, raw path taken)
    "one chunk per event, random cuts": (FULL, 1, True),
    "one chunk per event, other cuts": (FULL, 7, True),
    "byte by byte": (FULL, None, True),
    "chunks split inside UTF-8 characters": (chunked(utf8_split_parts()), 3, True),
    "extensions and trailers": (chunked([sse_bytes()], extension=b";x=1", trailers=b"X-T: 1\r\nY: 2\r\n"), 5, True),
    # h11 ends a reply on a bare LF too: the raw path must as well, not wait for more (a read timeout)
    "a bare LF ending the last chunk": (chunked([sse_bytes()], end=b"\n"), 4, True),
    "a bare LF ending the trailers": (chunked([sse_bytes()], trailers=b"X-T: 1\r\n", end=b"\n"), 5, True),
    "a bare LF ending a trailer line": (chunked([sse_bytes()], trailers=b"X-T: 1\n"), 6, True),
    "a bare LF byte by byte": (chunked([sse_bytes()], trailers=b"X-T: 1\n", end=b"\n"), None, True),
    "a bad trailer line": (chunked([sse_bytes()], trailers=b"bad trailer\r\n"), 7, True),
    "a chunk larger than a read": (chunked([b"data: " + b"x" * 200_000 + b"\n\n", b"data: [DONE]\n\n"]), 2, True),
    "content-length body": (HEAD + b"Content-Length: %d\r\n\r\n" % len(sse_bytes()) + sse_bytes(), 4, False),
    "gzip": (
        HEAD
        + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%X\r\n%s\r\n0\r\n\r\n" % (len(gzip.compress(sse_bytes())), gzip.compress(sse_bytes())),
        6,
        False,
    ),  # fmt: skip
    "cut short inside a chunk": (FULL[: FULL.index(b"[DONE]")], 8, True),
    "cut short before the last chunk": (FULL[: FULL.rindex(b"0\r\n")], 9, True),
    "a bad chunk size": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 1, True),
    "a bad chunk footer": (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 1, True),
    "silent mid-body (read timeout)": (FULL[: FULL.index(b"[DONE]")], 2, True),
}
HANG = {"silent mid-body (read timeout)"}
# Whole, valid replies: the server waits on the connection for the next request.
COMPLETE = {CASES[name][0] for name in CASES if not name.startswith(("cut short", "a bad", "silent"))}


async def serve(script: bytes, seed: int | None, hang: bool, connections: list) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
                    b"content-length:")), 0)  # fmt: skip
                await reader.readexactly(length)
                for piece in pieces(script, seed):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.0005)  # its own read
                if hang:
                    await asyncio.sleep(5)
                if script not in COMPLETE:
                    writer.close()  # a body cut short: the peer goes away
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()  # the client went away, or the test's loop ends

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def read_twice(rivya_settings, script: bytes, seed: int | None, raw: bool, hang: bool) -> tuple:
    """Two requests on one client: each one's SSE lines (or error type), whether the raw path read it,
    and the connections the server saw."""
    rivya_settings("RIVYA_API", CHAT_UPSTREAM_RAW_BODY=raw)
    connections: list = []

    async def one(client: httpx.AsyncClient, url: str) -> tuple:
        try:
            async with client.stream("POST", url, json={"a": 1}, timeout=httpx.Timeout(5, read=0.3)) as response:
                body = raw_body(response)
                lines = [line async for line in sse_lines(body or response.aiter_bytes())]
                return lines, body is not None
        except httpx.HTTPError as error:
            # Handlers read its request: set, as httpx sets it (else a RuntimeError, not the URL).
            return f"{type(error).__name__} {error.request.url.path}", None

    async def run() -> list:
        server = await serve(script, seed, hang, connections)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
        async with httpx.AsyncClient() as client:
            use_asyncio_network(client)
            results = [await one(client, url), await one(client, url)]
        server.close()
        return results

    return asyncio.run(run()), len(connections)


@pytest.mark.parametrize("name", CASES.keys())
def test_the_raw_reader_gives_what_httpx_gives(rivya_settings, name):
    script, seed, raw_taken = CASES[name]
    hang = name in HANG
    plain, plain_connections = read_twice(rivya_settings, script, seed, False, hang)
    results, connections = read_twice(rivya_settings, script, seed, True, hang)
    assert [lines for lines, _ in results] == [lines for lines, _ in plain]
    assert connections == plain_connections
    assert all(taken is not True for _, taken in plain)  # the switch is off: httpx read every reply
    if isinstance(results[0][0], list):  # a whole body: read by the raw path where it applies
        assert [taken for _, taken in results] == [raw_taken, raw_taken]
        assert connections == 1  # and the connection went back to the pool both ways


def test_the_events_survive_any_cut(rivya_settings):
    """Many random cuts of one reply: the raw path's lines are the events, every time."""
    expected, _ = read_twice(rivya_settings, FULL, 1, False, False)
    for seed in range(20, 30):
        results, _ = read_twice(rivya_settings, FULL, seed, True, False)
        assert results == [(expected[0][0], True), (expected[1][0], True)]
