"""Rivya's built-in local models: image, audio, video and chat that run offline, with no upstream.

They make real media (and a chat model that describes what it received) so a project
works end to end on a laptop and in tests. A host opts in with one line::

    RIVYA_API = {"MODELS": "rivya_api.catalog.local_models.LOCAL_MODELS"}

or lists them beside its own models (``[*LOCAL_MODELS, ...]``). They are meant for
development and integration tests; their prices are in credits like any other model.
Plain data with no Django import, so a settings module may import it.
"""

from __future__ import annotations

from typing import Any

# Image prices by size: free up to 512x512, then 2 and 4 credits on top of the base.
_SIZE_TIERS = {
    "type": "tiered",
    "parameters": ["width", "height"],
    "tiers": [{"up_to": 512 * 512, "credits": 0}, {"up_to": 1024 * 1024, "credits": 2}, {"up_to": None, "credits": 4}],
}

LOCAL_MODELS: list[dict[str, Any]] = [
    {
        "id": "rivya-image-1",
        "kind": "image",
        "description": "Rivya's built-in image model: a picture derived from the prompt and seed, optionally shaped by a reference image. Runs locally; meant for development and integration tests.",
        "provider": "rivya_api.generations.providers.local.LocalImageProvider",
        "pricing": {"base": 2, "terms": [_SIZE_TIERS]},
        "limits": {"timeout_seconds": 60},
        "created_at": "2026-05-01T00:00:00Z",
    },
    {
        "id": "rivya-audio-1",
        "kind": "audio",
        "description": "Rivya's built-in speech model: reads the prompt aloud (espeak-ng when installed, else synthesized tones). Runs locally; meant for development.",
        "provider": "rivya_api.generations.providers.local.LocalAudioProvider",
        "pricing": {"base": 3},
        "limits": {"timeout_seconds": 60},
        "created_at": "2026-05-01T00:00:00Z",
    },
    {
        "id": "rivya-video-1",
        "kind": "video",
        "description": "Rivya's built-in video model: a short clip rendered from the prompt and seed. Runs locally; meant for development.",
        "provider": "rivya_api.generations.providers.local.LocalVideoProvider",
        "pricing": {"base": 3, "terms": [{"type": "per_unit", "parameter": "duration", "credits": 2}]},
        "limits": {"timeout_seconds": 120},
        "created_at": "2026-05-01T00:00:00Z",
    },
    {
        "id": "rivya-chat-1",
        "kind": "chat",
        "description": "Rivya's built-in development chat model. It runs offline and does not understand language: it answers each turn with a short description of what it received (messages, prompt tokens, images), streamed token by token with exact token counts. For building and testing integrations, not for real conversations.",
        "provider": "rivya_api.chat.providers.local.LocalChatProvider",
        "pricing": {"input_per_1k_tokens": 1, "output_per_1k_tokens": 2},
        "limits": {"timeout_seconds": 60, "context_window": 4096, "max_output_tokens": 1024},
        "created_at": "2026-05-01T00:00:00Z",
    },
]
