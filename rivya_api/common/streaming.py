"""Streaming responses that an ASGI server can send without Django's warning.

Django's ``StreamingHttpResponse`` (and ``FileResponse``) under ASGI wants an
asynchronous iterator; given a synchronous one it warns on every response
("StreamingHttpResponse must consume synchronous iterators …") and, worse, reads
the whole body into memory before sending the first byte. Under WSGI (and
Django's test client) the synchronous iterator is the right one. So a view
builds its response as usual and passes it through ``serve_streaming``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse

Response = TypeVar("Response", bound=StreamingHttpResponse)

# Bytes per step of a file served under ASGI: each step is one hop to a thread and back.
ASGI_BLOCK_SIZE = 256 * 1024


def serve_streaming(request: Any, response: Response) -> Response:
    """Under ASGI, make ``response`` stream through an async iterator; elsewhere leave it as it is.

    Each chunk is produced in the request's thread (``sync_to_async``,
    thread-sensitive: the thread the view ran in, so a generator that reads the
    database keeps its connection), one at a time, so memory stays flat. Takes a
    DRF ``Request`` or a Django ``HttpRequest``.
    """
    django_request = getattr(request, "_request", request)
    if not isinstance(django_request, ASGIRequest) or response.is_async:
        return response
    if hasattr(response, "block_size"):
        response.block_size = ASGI_BLOCK_SIZE  # FileResponse reads the file this much at a time
    response.streaming_content = _stepped(iter(response.streaming_content))
    return response


async def _stepped(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    done = object()
    step = sync_to_async(next, thread_sensitive=True)
    while (chunk := await step(chunks, done)) is not done:
        yield chunk  # type: ignore[misc]
