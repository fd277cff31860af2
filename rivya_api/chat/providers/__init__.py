"""Chat providers: the interface, the local development model and the OpenAI-compatible adapter."""

from rivya_api.chat.providers.base import (
    ChatEvent,
    ChatProvider,
    ChatProviderError,
    ChatRequest,
    ChatUsage,
    Finished,
    TextDelta,
)

__all__ = ["ChatEvent", "ChatProvider", "ChatProviderError", "ChatRequest", "ChatUsage", "Finished", "TextDelta"]
