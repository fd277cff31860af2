"""Rivya's local chat model: a development model that runs offline and streams for real.

It does not understand language. It answers every turn with a short,
deterministic description of what it received (message count, prompt tokens,
attached images with their sizes, and the last user message quoted back), so a
developer can exercise the whole API — sessions, streaming, attachments,
reservations and settlement — on a laptop with no keys. The catalog says so.

Streaming is real: each token of the reply is yielded separately, after
``first_token_delay`` seconds and then ``token_delay`` seconds apart (both from
the model's options, default 0), with ``asyncio.sleep`` so the event loop stays
free. Token counts are exact by ``rivya_api.chat.tokenizer``. ``stop``
sequences end the reply before their first occurrence (finish reason ``stop``);
``max_output_tokens`` cuts it (finish reason ``length``). Sampling options have
nothing to sample: the reply is the same for the same prompt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from collections.abc import AsyncIterator
from typing import Any

from rivya_api.chat import tokenizer
from rivya_api.chat.providers.base import ChatEvent, ChatProvider, ChatRequest, ChatUsage, Finished, TextDelta

QUOTE_LIMIT = 2000


def _image_summary(url: str) -> str:
    """``64×48 PNG`` for an inline image, or ``an unreadable image``."""
    try:
        header, _, payload = url.partition(",")
        data = base64.b64decode(payload, validate=True)
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return f"{image.width}×{image.height} {image.format}"
    except (ValueError, binascii.Error, OSError):
        return "an unreadable image"


def _last_user_text(messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        texts, _ = tokenizer.message_parts(message.get("content"))
        content = message.get("content")
        images = (
            [part["image_url"]["url"] for part in content if part.get("type") == "image_url"]
            if isinstance(content, list)
            else []
        )
        return " ".join(texts), images
    return "", []


def local_reply(messages: list[dict[str, Any]], *, image_tokens: int = tokenizer.IMAGE_TOKENS) -> str:
    """The full reply the local model gives to ``messages`` (before stop and length cuts)."""
    prompt_tokens = tokenizer.count_prompt_tokens(messages, image_tokens=image_tokens)
    text, images = _last_user_text(messages)
    count = len(messages)
    reply = (
        "This is Rivya's local development model: it runs offline and does not understand language, "
        "so it describes what it received. "
        f"You sent {count} message{'s' if count != 1 else ''} ({prompt_tokens} prompt tokens)."
    )
    if images:
        reply += f" Your last message had {len(images)} image{'s' if len(images) != 1 else ''}: "
        reply += ", ".join(_image_summary(url) for url in images) + "."
    if text:
        quoted = text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "…"
        reply += f" It said: {quoted}"
    return reply


class LocalChatProvider(ChatProvider):
    """The offline development model (see the module docstring)."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        prompt_tokens = self.count_prompt_tokens(request.messages)
        reply = local_reply(request.messages, image_tokens=self.image_tokens)
        finish_reason = "stop"
        cut = min((reply.find(stop) for stop in request.stop if stop and stop in reply), default=-1)
        if cut >= 0:
            reply = reply[:cut]
        tokens = tokenizer.tokenize(reply)
        if len(tokens) > request.max_output_tokens:
            tokens = tokens[: request.max_output_tokens]
            finish_reason = "length"
        first_delay = float(self.options.get("first_token_delay", 0))
        delay = float(self.options.get("token_delay", 0))
        if first_delay:
            await asyncio.sleep(first_delay)
        for index, token in enumerate(tokens):
            if delay and index:
                await asyncio.sleep(delay)
            yield TextDelta(token)
        yield Finished(finish_reason, ChatUsage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens)))
