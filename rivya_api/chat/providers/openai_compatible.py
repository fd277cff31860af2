"""Adapter for any upstream that speaks the OpenAI Chat Completions protocol.

Configured per catalog model: the entry's ``upstream`` names the environment
variables holding the base URL (e.g. ``https://host/v1``) and the key, which
the catalog passes in as the ``base_url`` and ``api_key`` options; a model
whose variables are not set is not configured, so the catalog does not list
it and the API does not serve it. The entry's ``options``:

- ``upstream_model``: the model name sent upstream (never shown to clients).
- ``connect_timeout`` (5 s), ``read_timeout`` (60 s: the longest silence allowed
  between two chunks), ``total_timeout`` (600 s for the whole reply).
- ``prompt_token_margin`` (1.25): the reservation pads our own token estimate
  of the prompt by this factor, since the upstream tokenises differently.
- ``image_tokens`` (1105): the reservation's estimate per image.
- ``max_tokens_param`` (``max_tokens``): the field that carries the output cap.

Requests are streamed (``stream: true`` with ``include_usage``) whether or not
the client streams, so tokens reach the gateway as the upstream makes them.
Every failure becomes a ``ChatProviderError`` with a Rivya code and a message
that names neither the upstream nor its model; the upstream's own words are
logged, not returned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from rivya_api.chat import tokenizer
from rivya_api.chat.providers.asyncio_network import use_asyncio_network
from rivya_api.chat.providers.base import (
    ChatEvent,
    ChatProvider,
    ChatProviderError,
    ChatRequest,
    ChatUsage,
    Finished,
    TextDelta,
    mark_reply_started,
    mark_request_sent,
)
from rivya_api.chat.providers.chunked_body import raw_body
from rivya_api.chat.providers.upstream_clients import SHARDS, UpstreamClients
from rivya_api.conf import api_settings

logger = logging.getLogger(__name__)

FINISH_REASONS = {"stop", "length", "content_filter"}

# The pooled upstream clients of each event loop (several when the pool is sharded, see
# upstream_clients): connections to the upstream are reused across turns, and a client is never
# used from a loop it was not made on.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamClients] = weakref.WeakKeyDictionary()


def _new_client(limits: httpx.Limits, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
    client = httpx.AsyncClient(limits=limits, verify=ssl_context)  # timeouts are set per request
    if api_settings.CHAT_UPSTREAM_ASYNCIO_NETWORK:
        try:
            use_asyncio_network(client)
        except (AttributeError, RuntimeError):  # an httpx/httpcore release moved what it sets
            logger.warning("chat upstream: httpcore's own network backend in use", exc_info=True)
    return client


def _upstream_clients() -> UpstreamClients:
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None or clients.is_closed:
        shards = SHARDS if api_settings.CHAT_UPSTREAM_SHARDED_POOL else 1
        clients = _clients[loop] = UpstreamClients(_new_client, shards)
    return clients


def _client() -> httpx.AsyncClient:
    """This loop's first upstream client: the one every turn uses while no other is streaming."""
    return _upstream_clients().clients[0]


# How long to wait, after [DONE], for the end of the response body (see _read_to_the_end).
DRAIN_SECONDS = 0.05


async def _read_to_the_end(lines: AsyncIterator[str]) -> None:
    """Read what follows [DONE] up to the body's end, so the connection goes back to the pool.

    A response closed before its body ended takes its connection with it: the
    next turn would pay a new TCP (and TLS) handshake to the model. A body that
    does not end promptly is left to that fate rather than delay the turn.
    """
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in lines:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of an SSE body (ended by CR, LF or CRLF, as the SSE format says), as its bytes arrive.

    In place of httpx's ``aiter_lines`` (the hot path of a stream): one generator layer and
    two decoders fewer per chunk, and no split on the other Unicode line breaks
    ``str.splitlines`` knows (U+2028 …), which may stand raw inside a chunk's JSON. Invalid
    UTF-8 is replaced, as httpx's text decoder does.
    """
    rest, after_cr = b"", False
    async for chunk in chunks:
        if after_cr and chunk[:1] == b"\n":  # the LF of a CRLF split between two pieces
            chunk = chunk[1:]
            after_cr = False  # that CRLF is whole: a next LF ends a line of its own
        data = rest + chunk if rest else chunk
        if not data:
            continue
        lines = data.splitlines()  # bytes: CR, LF and CRLF only
        # An unfinished last line waits for the rest; a CR at the end ended its line, and may be
        # half a CRLF whose LF comes next.
        rest = lines.pop() if lines and data[-1:] not in (b"\n", b"\r") else b""
        after_cr = data[-1:] == b"\r"
        for line in lines:
            yield line.decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8", "replace")


async def _trace(event: str, info: dict[str, Any]) -> None:
    # httpcore's trace extension: tell the turn once the request body is on the wire.
    if event.endswith("send_request_body.complete"):
        mark_request_sent()


def _unavailable() -> ChatProviderError:
    return ChatProviderError(
        "The model is unavailable right now; try again shortly.", code="model_unavailable", status=502
    )


def _broken() -> ChatProviderError:
    return ChatProviderError("The model failed while answering; try again.", code="model_error", status=502)


class OpenAICompatibleChatProvider(ChatProvider):
    """Streams from an OpenAI-compatible upstream (see the module docstring)."""

    @classmethod
    def is_configured(cls, options: Mapping[str, Any]) -> bool:
        return bool(str(options.get("base_url") or "").strip() and options.get("upstream_model"))

    @property
    def upstream_model(self) -> str:
        return str(self.options.get("upstream_model") or "")

    @property
    def image_tokens(self) -> int:
        return int(self.options.get("image_tokens", 1105))

    def count_prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        estimate = tokenizer.count_prompt_tokens(messages, image_tokens=self.image_tokens)
        return math.ceil(estimate * float(self.options.get("prompt_token_margin", 1.25)))

    def _endpoint(self) -> tuple[str, dict[str, str]]:
        base_url = str(self.options.get("base_url") or "").strip().rstrip("/")
        if not base_url:
            logger.error("Chat model %s has no upstream base URL configured", self.upstream_model)
            raise _unavailable()
        headers = {"Accept": "text/event-stream"}
        key = str(self.options.get("api_key") or "").strip()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return f"{base_url}/chat/completions", headers

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            self.options.get("max_tokens_param", "max_tokens"): request.max_output_tokens,
        }
        for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop:
            body["stop"] = request.stop
        return body

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=float(self.options.get("connect_timeout", 5)),
            read=float(self.options.get("read_timeout", 60)),
            write=float(self.options.get("connect_timeout", 5)),
            pool=float(self.options.get("connect_timeout", 5)),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        url, headers = self._endpoint()
        deadline = time.monotonic() + float(self.options.get("total_timeout", 600))
        try:
            with _upstream_clients().lease() as client:
                async with client.stream(
                    "POST",
                    url,
                    json=self._body(request),
                    headers=headers,
                    timeout=self._timeout(),
                    extensions={"trace": _trace},
                ) as response:
                    if response.status_code >= 400:
                        raise await self._status_error(response)
                    mark_reply_started()
                    async for event in self._events(response, deadline):
                        yield event
        except ChatProviderError:
            raise
        except httpx.TimeoutException as exc:
            logger.warning("Chat model %s upstream timed out: %r", self.upstream_model, exc)
            raise ChatProviderError(
                "The model took too long to answer; try again.", code="model_timeout", status=504
            ) from None
        except httpx.TransportError as exc:  # connect errors, broken streams
            logger.warning("Chat model %s upstream connection failed: %r", self.upstream_model, exc)
            raise (_unavailable() if isinstance(exc, httpx.ConnectError) else _broken()) from None

    async def _events(self, response: httpx.Response, deadline: float) -> AsyncIterator[ChatEvent]:
        finish_reason: str | None = None
        usage: ChatUsage | None = None
        lines = sse_lines(raw_body(response) or response.aiter_bytes())
        async for line in lines:
            if time.monotonic() > deadline:
                raise ChatProviderError(
                    "The model took too long to answer; try again.", code="model_timeout", status=504
                )
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names, ids
            data = line[5:].strip()
            if data == "[DONE]":
                await _read_to_the_end(lines)
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                logger.warning("Chat model %s upstream sent a malformed chunk", self.upstream_model)
                raise _broken() from None
            if not isinstance(chunk, dict) or "error" in chunk:
                logger.warning("Chat model %s upstream failed mid-stream: %.500s", self.upstream_model, data)
                raise _broken()
            if chunk.get("usage"):
                usage = ChatUsage(
                    prompt_tokens=int(chunk["usage"].get("prompt_tokens") or 0),
                    completion_tokens=int(chunk["usage"].get("completion_tokens") or 0),
                )
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield TextDelta(content)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        if finish_reason is None:
            logger.warning("Chat model %s upstream stream ended without a finish reason", self.upstream_model)
            raise _broken()
        yield Finished(finish_reason if finish_reason in FINISH_REASONS else "stop", usage)

    async def _status_error(self, response: httpx.Response) -> ChatProviderError:
        body = (await response.aread())[:500]
        status = response.status_code
        logger.warning("Chat model %s upstream answered %s: %r", self.upstream_model, status, body)
        if status == 429:
            retry_after = response.headers.get("Retry-After", "")
            return ChatProviderError(
                "The model is busy; retry after the Retry-After delay.",
                code="model_overloaded",
                status=503,
                retry_after=int(retry_after) if retry_after.isdigit() else 5,
            )
        if status in (400, 413, 422):
            return ChatProviderError(
                "The model rejected the request (for example, the prompt is too long for it).",
                code="model_rejected_request",
                status=400,
            )
        if status in (408, 504):
            return ChatProviderError("The model took too long to answer; try again.", code="model_timeout", status=504)
        # 401/403/404 mean our configuration is wrong; 5xx the upstream is; neither is the client's doing.
        return _unavailable() if status < 500 else _broken()
