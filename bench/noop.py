"""A generation provider that does nothing: one 1x1 PNG, straight away (bench settings only)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from rivya_api.generations.providers.base import OutputFile, Provider

# A valid 1x1 PNG, so the output passes the same file checks as real outputs.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class NoopImageProvider(Provider):
    kind = "image"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"prompt": {"type": "string", "minLength": 1}},
            "required": ["prompt"],
            "additionalProperties": False,
        }

    def generate(self, *, params: dict[str, Any], input_files: dict[str, Any], progress: Any) -> list[OutputFile]:
        return [OutputFile(filename="noop.png", content_type="image/png", data=PIXEL_PNG)]
