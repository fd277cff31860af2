"""ASGI middleware for the API: oversize bodies are refused before they are read.

Django's ASGI handler reads the whole request body (into memory, then a
temporary file) before any middleware or view runs, so a 200 MB upload was
read in full before its 413. ``BodyLimitMiddleware`` wraps the Django
application: for a request routed to the API, a ``Content-Length`` above
``RIVYA_API["MAX_REQUEST_BYTES"]`` is answered 413 at once, in the error shape,
without reading a byte of the body; a body without a length (chunked) is counted
as it arrives and cut off at the limit the same way. Under WSGI the gate's own
``Content-Length`` check runs before anything reads the body, so this is only
needed in front of ASGI. The settings pages, Studio and the guides take small forms only:
their bodies are bounded the same way by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (an HTML 413)::

    application = BodyLimitMiddleware(get_asgi_application())
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rivya_api.common import request_id
from rivya_api.common.errors import error_body

access_logger = logging.getLogger("rivya.access")


class BodyLimitMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit, api = _limit(scope) if scope["type"] == "http" else (None, False)
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, limit, api=api)
            return
        if declared is not None and declared.isdigit() and _header(scope, b"transfer-encoding") is None:
            # The server passes on no more than the declared length, so nothing needs counting; and the
            # response's messages (a chat stream sends one per event) go straight to the server.
            await self.app(scope, receive, send)
            return
        state = {"received": 0, "over": False, "started": False}

        async def counted_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, counted_receive, watched_send)
        if state["over"] and not state["started"]:
            await _refuse(scope, send, limit, api=api)


PAGE_NAMESPACES = frozenset({"rivya_pages", "rivya_studio", "rivya_docs"})


def _limit(scope: dict[str, Any]) -> tuple[int | None, bool]:
    """(the body limit of the route ``scope`` names, whether it is the API); None: no limit here."""
    from django.conf import settings
    from django.urls import Resolver404

    from rivya_api.common import resolve_once
    from rivya_api.common.gate import API_NAMESPACE
    from rivya_api.conf import api_settings

    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        namespaces = set(resolve_once.resolve(path, scope).namespaces)  # kept for the gate and Django's handler
    except Resolver404:
        return None, False
    if API_NAMESPACE in namespaces:
        return int(api_settings.MAX_REQUEST_BYTES), True
    if namespaces & PAGE_NAMESPACES and settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE), False
    return None, False


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _refuse(scope: dict[str, Any], send: Any, limit: int, *, api: bool) -> None:
    rid = request_id.request_id_from_header(_header(scope, b"x-request-id"))
    token = request_id.set_current_request_id(rid)
    message = f"The request body is larger than {limit} bytes."
    try:
        body = json.dumps(error_body(413, "request_too_large", message)).encode()
    finally:
        request_id.reset_current_request_id(token)
    content_type = b"application/json"
    if not api:
        body = f"<!doctype html><title>Too large</title><h1>Too large</h1><p>{message}</p>".encode()
        content_type = b"text/html; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode()),
        (b"connection", b"close"),  # the unread body is not drained
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    access_logger.info("%s %s 413 (body not read)", scope.get("method"), scope.get("path"), extra={"request_id": rid})
