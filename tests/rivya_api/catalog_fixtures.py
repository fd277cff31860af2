"""A test catalog with its own provider classes, and the ``sample_catalog`` fixture.

Tests never depend on the reference project's catalog: they set
``RIVYA_API["MODELS"]`` to ``TEST_MODELS`` (or a variant) through settings.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest


class _TestProvider:
    kind = "image"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})


class ImageTestProvider(_TestProvider):
    """Supplies its own parameters schema, like the real local providers."""

    kind = "image"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["prompt"],
            "additionalProperties": False,
            "properties": {
                "prompt": {"type": "string", "minLength": 1, "maxLength": 500, "description": "What to draw."},
                "width": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
                "height": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
                "seed": {"type": "integer", "minimum": 0},
                "reference_image": {
                    "type": "string",
                    "pattern": "^file_[A-Za-z0-9_-]+$",
                    "x-rivya-file": {"content_types": ["image/png", "image/jpeg"]},
                },
            },
        }


class VideoTestProvider(_TestProvider):
    kind = "video"


class AudioTestProvider(_TestProvider):
    kind = "audio"


class ChatTestProvider(_TestProvider):
    kind = "chat"


class UpstreamTestProvider(_TestProvider):
    kind = "image"


class SwitchableTestProvider(_TestProvider):
    """Listed only while ``options["enabled"]`` is true."""

    kind = "audio"

    @classmethod
    def is_configured(cls, options: Mapping[str, Any] | None = None) -> bool:
        return bool((options or {}).get("enabled"))


PROVIDERS = "tests.rivya_api.catalog_fixtures"

VIDEO_PARAMETERS = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "duration": {"type": "number", "minimum": 0.5, "maximum": 10, "default": 2},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "default": []},
    },
}

TEST_MODELS: list[dict[str, Any]] = [
    {
        "id": "test-image",
        "kind": "image",
        "description": "Test image model.",
        "provider": f"{PROVIDERS}.ImageTestProvider",
        "options": {"palette": "warm"},
        "pricing": {
            "base": 2,
            "terms": [
                {
                    "type": "tiered",
                    "parameters": ["width", "height"],
                    "tiers": [
                        {"up_to": 512 * 512, "credits": 0},
                        {"up_to": 1024 * 1024, "credits": 2},
                        {"up_to": None, "credits": 5},
                    ],
                }
            ],
        },
        "limits": {"timeout_seconds": 30},
        "created_at": "2026-01-02T03:04:05Z",
    },
    {
        "id": "test-video",
        "kind": "video",
        "description": "Test video model.",
        "provider": f"{PROVIDERS}.VideoTestProvider",
        "parameters": VIDEO_PARAMETERS,
        "pricing": {"base": 4, "terms": [{"type": "per_unit", "parameter": "duration", "credits": 3}]},
    },
    {
        "id": "test-audio",
        "kind": "audio",
        "description": "Test audio model.",
        "provider": f"{PROVIDERS}.AudioTestProvider",
        "parameters": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        "pricing": {"base": 1},
    },
    {
        "id": "test-chat",
        "kind": "chat",
        "description": "Test chat model.",
        "provider": f"{PROVIDERS}.ChatTestProvider",
        "parameters": {"type": "object", "properties": {"temperature": {"type": "number", "default": 1}}},
        "pricing": {"input_per_1k_tokens": 1, "output_per_1k_tokens": 3},
        "limits": {"context_window": 4096},
    },
    {
        "id": "test-upstream",
        "kind": "image",
        "description": "Test upstream model.",
        "provider": f"{PROVIDERS}.UpstreamTestProvider",
        "options": {"model": "upstream-secret-model-name"},
        "parameters": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
        "upstream": {"base_url_env": "RIVYA_TEST_UPSTREAM_URL", "api_key_env": "RIVYA_TEST_UPSTREAM_KEY"},
        "pricing": {"base": 9},
    },
    {
        "id": "test-missing",
        "kind": "image",
        "description": "A model whose provider does not exist here.",
        "provider": f"{PROVIDERS}.NoSuchProvider",
        "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}}},
        "pricing": {"base": 1},
    },
]


def catalog_entries() -> list[dict[str, Any]]:
    """A fresh deep copy of ``TEST_MODELS`` that a test may change."""
    return copy.deepcopy(TEST_MODELS)


@pytest.fixture
def sample_catalog(settings: Any) -> list[dict[str, Any]]:
    """``RIVYA_API["MODELS"]`` = the test catalog for this test (the cache reloads on the change)."""
    models = catalog_entries()
    settings.RIVYA_API = {**settings.RIVYA_API, "MODELS": models}
    return models


@pytest.fixture
def catalog_models_setting(settings: Any):
    """``catalog_models_setting(models)`` installs any list as the catalog for this test."""

    def install(models: Any) -> None:
        settings.RIVYA_API = {**settings.RIVYA_API, "MODELS": models}

    return install
