"""413 before the body is read (issue 21, item 7): under ASGI, Django reads a whole body before any
middleware runs, so the limit sits in front of it. Driven at the ASGI level with the project's own
Django application and a client that counts what was taken from it."""

from __future__ import annotations

import asyncio
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
