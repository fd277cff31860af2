"""Adapter for an upstream image service that speaks the OpenAI Images API.

``POST {base_url}/images/generations`` with ``{"model", "prompt", "size", "n",
"response_format": "b64_json"}`` and ``Authorization: Bearer <key>``; the
answer's ``data[].b64_json`` are the images. The base URL and the key come
from environment variables whose *names* the catalog entry gives, so no
secret lives in settings. The catalog's ``upstream`` entry
(``{"base_url_env", "api_key_env"}``) reads them and passes the values in as
``options["base_url"]``/``options["api_key"]``; without those keys the adapter
reads the variables named by ``options["base_url_env"]``/``["api_key_env"]``
itself::

    "options": {
        "base_url_env": "RIVYA_UPSTREAM_IMAGES_BASE_URL",   # e.g. https://upstream.example/v1
        "api_key_env": "RIVYA_UPSTREAM_IMAGES_API_KEY",
        "upstream_model": "gpt-image-1",
        # optional:
        "sizes": ["1024x1024", "1536x1024", "1024x1536"],   # offered as the ``size`` enum
        "max_images": 4,                                    # upper bound of ``n``
        "timeout": 120,                                     # seconds for the whole request
        "response_format": "b64_json",                      # null: don't send it (models that refuse it)
        "extra_body": {"quality": "low"},                   # fixed fields added to every request
        "max_response_bytes": 67108864,
        "proxy": "http://proxy.internal:3128",              # outbound proxy, if any
        "safe_to_retry": false,
    }

:meth:`OpenAIImagesProvider.is_configured` is False until both variables are
set; the catalog then hides the model. Every failure becomes a
:class:`ProviderError` whose message never names the upstream, its model or
its URL; the details (status, a slice of the body) go to the log only.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from rivya_api.generations.providers.base import (
    InputFile,
    OutputFile,
    ProgressReporter,
    Provider,
    ProviderError,
    ProviderInputError,
    ProviderOutputError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

__all__ = ["OpenAIImagesProvider"]

logger = logging.getLogger(__name__)

DEFAULT_SIZES = ("1024x1024", "1536x1024", "1024x1536")
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# Magic bytes of the formats an upstream may return, and what we call them.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
)


class OpenAIImagesProvider(Provider):
    """Images from an OpenAI-Images-compatible upstream. Input: ``prompt``, ``size``, ``n``."""

    kind = "image"
    # A retried request may be billed upstream twice; catalog options may say otherwise.
    default_safe_to_retry = False

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        options = options or {}
        sizes = list(options.get("sizes") or DEFAULT_SIZES)
        return {
            "type": "object",
            "properties": {
                "prompt": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": int(options.get("max_prompt_length", 4000)),
                    "pattern": r"\S",
                    "description": "What to draw.",
                },
                "size": {"type": "string", "enum": sizes, "default": sizes[0], "description": "WIDTHxHEIGHT."},
                "n": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": int(options.get("max_images", 4)),
                    "default": 1,
                    "description": "How many images.",
                },
            },
            "required": ["prompt"],
            "additionalProperties": False,
        }

    @classmethod
    def is_configured(cls, options: Mapping[str, Any] | None = None) -> bool:
        base_url, api_key = _credentials(options or {})
        return bool(base_url and api_key)

    def generate(self, *, params: dict[str, Any], input_files: dict[str, InputFile], progress: ProgressReporter):
        base_url, api_key = _credentials(self.options)
        if not (base_url and api_key):
            logger.error("image upstream is not configured (variables %s, %s)", *_env_names(self.options))
            raise ProviderUnavailableError()
        body = {**(self.options.get("extra_body") or {}), "prompt": params["prompt"]}
        body.update(size=params["size"], n=params["n"])
        if self.options.get("upstream_model"):
            body["model"] = self.options["upstream_model"]
        response_format = self.options.get("response_format", "b64_json")
        if response_format:
            body["response_format"] = response_format
        timeout = min(float(self.options.get("timeout", DEFAULT_TIMEOUT)), progress.remaining())
        if timeout <= 0:
            raise ProviderTimeoutError()
        progress(5)
        payload = self._post(f"{base_url.rstrip('/')}/images/generations", api_key, body, timeout)
        progress(90)
        outputs = [_decoded_image(item, index) for index, item in enumerate(_items(payload))]
        if len(outputs) != params["n"]:
            logger.warning("image upstream returned %s images for n=%s", len(outputs), params["n"])
        return outputs

    def _post(self, url: str, api_key: str, body: dict[str, Any], timeout: float) -> Any:
        limit = int(self.options.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES))
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        # httpx's timeout bounds each connect/read/write; the whole answer must also arrive by then.
        ends = time.monotonic() + timeout
        try:
            # No redirects: a redirected POST would carry the key somewhere we did not choose.
            # trust_env=False: the proxy comes from options, not from whatever the process inherited.
            with (
                httpx.Client(
                    timeout=timeout, follow_redirects=False, trust_env=False, proxy=self.options.get("proxy")
                ) as client,
                client.stream("POST", url, json=body, headers=headers) as response,
            ):
                content = _read_limited(response, limit, ends)
        except httpx.TimeoutException as exc:
            logger.warning("image upstream timed out after %.1fs: %s", timeout, type(exc).__name__)
            raise ProviderTimeoutError() from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            logger.warning("image upstream unreachable: %s", type(exc).__name__)
            raise ProviderUnavailableError() from exc
        if response.status_code != 200:
            raise _status_error(response.status_code, content)
        try:
            return json.loads(content)
        except ValueError as exc:
            logger.warning("image upstream answered 200 with invalid JSON: %r", content[:200])
            raise ProviderOutputError() from exc


def _env_names(options: Mapping[str, Any]) -> tuple[str, str]:
    return (
        options.get("base_url_env", "RIVYA_UPSTREAM_IMAGES_BASE_URL"),
        options.get("api_key_env", "RIVYA_UPSTREAM_IMAGES_API_KEY"),
    )


def _credentials(options: Mapping[str, Any]) -> tuple[str, str]:
    """``(base_url, api_key)``: given in ``options`` (the catalog's ``upstream`` puts them there),
    else read now from the variables the options name (the environment may change; tests set it)."""
    base_url_env, api_key_env = _env_names(options)
    base_url = options["base_url"] if "base_url" in options else os.environ.get(base_url_env, "")
    api_key = options["api_key"] if "api_key" in options else os.environ.get(api_key_env, "")
    return (base_url or "").strip(), (api_key or "").strip()


def _read_limited(response: httpx.Response, limit: int, ends: float) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        if time.monotonic() > ends:
            raise httpx.ReadTimeout("the answer took too long", request=response.request)
        size += len(chunk)
        if size > limit:
            logger.warning("image upstream answer exceeds %s bytes", limit)
            raise ProviderOutputError()
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(status: int, content: bytes) -> ProviderError:
    """The Rivya error for an upstream's non-200 answer (the body is logged, never shown)."""
    logger.warning("image upstream answered %s: %r", status, content[:500])
    if status in (400, 422):
        # The upstream refused this prompt or these parameters (often its content policy).
        return ProviderInputError("The model rejected this input.")
    if status in (408, 504):
        return ProviderTimeoutError()
    if status in (401, 403, 404):
        # Our key, account or model id is wrong: an operator must act, the client cannot.
        logger.error("image upstream refused our credentials or model (status %s)", status)
    return ProviderUnavailableError()


def _items(payload: Any) -> list[Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not data:
        logger.warning("image upstream answer has no data list: %r", str(payload)[:200])
        raise ProviderOutputError()
    return data


def _decoded_image(item: Any, index: int) -> OutputFile:
    encoded = item.get("b64_json") if isinstance(item, dict) else None
    if not isinstance(encoded, str) or not encoded:
        logger.warning("image upstream item %s has no b64_json", index)
        raise ProviderOutputError()
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderOutputError() from exc
    content_type, extension = _sniff(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel: a truncated image fails here, not in a client
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        logger.warning("image upstream item %s does not decode: %s", index, exc)
        raise ProviderOutputError() from exc
    return OutputFile(
        filename=f"image-{index + 1}.{extension}",
        content_type=content_type,
        data=data,
        metadata={"width": width, "height": height},
    )


def _sniff(data: bytes) -> tuple[str, str]:
    for signature, content_type, extension in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return content_type, extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    raise ProviderOutputError()
