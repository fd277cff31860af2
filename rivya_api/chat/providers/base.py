"""The interface every chat provider implements.

A provider turns a prompt (OpenAI-shaped messages whose images are already
inline ``data:`` URLs) into a stream of events: ``TextDelta`` for each piece of
the reply as it is produced, then exactly one ``Finished`` with the finish
reason and the usage. It raises ``ChatProviderError`` for any failure, with a
Rivya code and message that never name the upstream.

Providers are named by dotted path in the model catalog and built per turn
by ``catalog_provider(model)`` as ``ProviderClass(options)`` (the entry's
``options``, plus ``base_url`` and ``api_key`` for models with an
``upstream``); they hold no database state and
must not block the event loop (the local model sleeps with ``asyncio.sleep``;
the upstream adapter uses an async HTTP client). A provider that talks to a
remote model calls ``mark_request_sent()`` once the model has the whole
request: a streamed turn does its own database work from then on, so that it
does not slow the request down (a provider that does not say so gets the same
from its first event). It calls ``mark_reply_started()`` once the model has
accepted the request (an HTTP 200): the client's response starts then, as a
direct call's would, rather than with the first token; a failure after that is
an error event in the stream.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from rivya_api.chat import tokenizer

# Set by the task running a turn, for the provider it runs (see mark_request_sent).
request_sent_hook: ContextVar[Callable[[], None] | None] = ContextVar("rivya_chat_request_sent", default=None)


reply_started_hook: ContextVar[Callable[[], None] | None] = ContextVar("rivya_chat_reply_started", default=None)


def mark_request_sent() -> None:
    """For providers: the model has the whole request now; what follows is its reply."""
    hook = request_sent_hook.get()
    if hook is not None:
        hook()


def mark_reply_started() -> None:
    """For providers: the model accepted the request; its reply (or a failure within it) follows."""
    hook = reply_started_hook.get()
    if hook is not None:
        hook()


@dataclass(frozen=True)
class ChatUsage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    """The end of a reply. ``usage`` is None when the provider could not report it."""

    finish_reason: str  # "stop" or "length"
    usage: ChatUsage | None = None


ChatEvent = TextDelta | Finished


@dataclass(frozen=True)
class ChatRequest:
    """What a provider is asked: the full prompt and the sampling options the client set."""

    messages: list[dict[str, Any]]
    max_output_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class ChatProviderError(Exception):
    """A failed model call, already in Rivya's words (never an upstream name or message)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "model_error",
        status: int = 502,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.headers = {"Retry-After": str(retry_after)} if retry_after else {}


class ChatProvider(abc.ABC):
    """Base class of chat providers (see the module docstring for the contract)."""

    kind = "chat"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The catalog's ``parameters`` of a chat model: the sampling fields a turn may set.

        Documentation for ``GET /models``; turns are validated by the Chat API's
        request serializer, which follows OpenAI's request shape.
        """
        return {
            "type": "object",
            "properties": {
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "stop": {"type": ["string", "array"], "items": {"type": "string"}, "maxItems": 4},
                "seed": {"type": "integer"},
                "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            },
        }

    @classmethod
    def is_configured(cls, options: Mapping[str, Any]) -> bool:
        """Whether the model can run here; an unconfigured model is not listed or served."""
        return True

    def count_prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        """An upper bound of the prompt's tokens, used to size the credit reservation.

        Exact for the local model; the upstream adapter pads it by a margin.
        """
        return tokenizer.count_prompt_tokens(messages, image_tokens=self.image_tokens)

    def count_completion_tokens(self, text: str) -> int:
        """Tokens of a (possibly partial) reply, for turns that end before usage is reported."""
        return tokenizer.count_tokens(text)

    @property
    def image_tokens(self) -> int:
        return int(self.options.get("image_tokens", tokenizer.IMAGE_TOKENS))

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        """Yield ``TextDelta`` events, then one ``Finished``; raise ``ChatProviderError`` on failure."""
