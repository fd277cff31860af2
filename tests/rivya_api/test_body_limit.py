"""413 before the body is read (issue 21, item 7): under ASGI, Django reads a whole body before any
middleware runs, so the limit sits in front of it. Driven at the ASGI level with the project's own
Django application and a client that counts what was taken from it."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from config.middleware import ASGIHandler
from rivya_api.common.asgi import BodyLimitMiddleware

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MAX_REQUEST_BYTES": 1024 * 1024}})]

CHUNK = 64 * 1024


def call(path: str, *, total: int, declare: bool) -> tuple[int, dict, int]:
    """Send a POST of ``total`` bytes in chunks; returns (status, error body, bytes the app took)."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if declare:
        headers.append((b"content-length", str(total).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}  # fmt: skip
    taken = 0
    sent: list[dict] = []

    async def receive():
        nonlocal taken
        if taken >= total:
            await asyncio.sleep(3600)
        size = min(CHUNK, total - taken)
        taken += size
        return {"type": "http.request", "body": b" " * size, "more_body": taken < total}

    async def send(message):
        sent.append(message)

    asyncio.run(BodyLimitMiddleware(ASGIHandler())(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body) if body.startswith(b"{") else {}, taken


def test_a_declared_200_mb_body_is_refused_before_a_byte_is_read():
    status, body, taken = call("/api/v1/files", total=200 * 1024 * 1024, declare=True)
    assert (status, body["error"]["code"], taken) == (413, "request_too_large", 0)
    assert body["error"]["request_id"].startswith("req_")


def test_a_chunked_body_is_cut_off_at_the_limit():
    status, body, taken = call("/api/v1/generations", total=200 * 1024 * 1024, declare=False)
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert taken <= 1024 * 1024 + CHUNK


def test_bodies_under_the_limit_and_pages_pass_through():
    status, body, taken = call("/api/v1/generations", total=100, declare=True)
    assert status == 401  # reached the API (no key), body read
    assert taken == 100


def test_the_pages_take_small_forms_only(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    status, _, taken = call("/settings/api-keys", total=50 * 1024 * 1024, declare=True)
    assert (status, taken) == (413, 0)


def test_a_declared_length_within_the_limit_hands_the_servers_own_callables_to_the_app():
    """Nothing to count: the response's messages (one per event of a chat stream) skip the wrapper."""
    seen: list[tuple] = []

    async def app(scope, receive, send):
        seen.append((receive, send))

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        pass

    def scope(headers):
        return {"type": "http", "http_version": "1.1", "method": "POST", "path": "/api/v1/chat/completions",
                "root_path": "", "headers": [(b"host", b"testserver"), *headers]}  # fmt: skip

    middleware = BodyLimitMiddleware(app)
    asyncio.run(middleware(scope([(b"content-length", b"2")]), receive, send))
    asyncio.run(middleware(scope([(b"content-length", b"2"), (b"transfer-encoding", b"chunked")]), receive, send))
    asyncio.run(middleware(scope([]), receive, send))
    assert seen[0] == (receive, send)
    for counted_receive, watched_send in seen[1:]:  # counted: no length to trust
        assert counted_receive is not receive
        assert watched_send is not send


LYING = {  # name: request bytes (limit 100; 100 kB behind every head)
    "a Content-Length smaller than the body": b"Content-Length: 10\r\n\r\n",
    "a Content-Length with leading zeros": b"Content-Length: 000010\r\n\r\n",
    "two Content-Lengths": b"Content-Length: 10\r\nContent-Length: 100000\r\n\r\n",
    "a Content-Length list": b"Content-Length: 10, 100000\r\n\r\n",
    "a Content-Length beside chunked": b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n186A0\r\n",
}


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("name", LYING.keys())
def test_a_lying_content_length_never_gives_the_app_more_than_the_limit(monkeypatch, http, name):
    """A declared length within the limit is not counted (see BodyLimitMiddleware): that relies on
    uvicorn's parsers (httptools, its default, and h11) passing on no more than it, whatever follows."""
    import socket

    from rivya_api.common import asgi
    from tests.rivya_api.chat.servers import ServerThread

    monkeypatch.setattr(asgi, "_limit", lambda scope: (100, True))
    seen: list[int] = []

    async def app(scope, receive, send):
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        seen.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with ServerThread(BodyLimitMiddleware(app), http=http) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(b"POST /api/v1/files HTTP/1.1\r\nHost: x\r\n" + LYING[name] + b"x" * 100_000)
            reply = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    reply += chunk
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]  # answered (200, 400 or 413), not hung
    assert all(total <= 100 for total in seen), seen
    if name == "a Content-Length smaller than the body":
        assert seen[:1] == [10], seen
