"""The shape of one ``RIVYA_API["MODELS"]`` entry, stated as a JSON Schema (draft 2020-12).

``entry_problems`` checks an entry against it and names each problem by its
field (``pricing.terms[0].unit``), with the message an operator should read
(``x-message`` on the failing part of the schema, else jsonschema's own). What
a schema cannot say stays in ``spec``: duplicate ids, timestamps given as
``datetime`` objects, increasing price tiers, and the ``parameters`` schema's
own validity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

KINDS = ("image", "video", "audio", "chat")
MEDIA_KINDS = ("image", "video", "audio")

_CREDITS = {"type": "integer", "minimum": 0, "x-message": "must be an integer >= 0"}
_ENV_NAME = {
    "type": "string",
    "pattern": "^[A-Z_][A-Z0-9_]*$",
    "x-message": "must be an environment variable name (A-Z, 0-9, _)",
}

_PER_UNIT = {
    "required": ["parameter", "credits"],
    "additionalProperties": False,
    "x-message": "per_unit takes only parameter, credits and unit",
    "properties": {
        "type": True,
        "parameter": {"type": "string", "x-message": "must name a numeric input parameter"},
        "credits": _CREDITS,
        "unit": {"type": "integer", "minimum": 1, "x-message": "must be an integer >= 1"},
    },
}

_TIERED = {
    "required": ["parameters", "tiers"],
    "additionalProperties": False,
    "x-message": "tiered takes only parameters and tiers",
    "properties": {
        "type": True,
        "parameters": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
            "x-message": "must be a non-empty list of numeric input parameters",
        },
        "tiers": {
            "type": "array",
            "minItems": 1,
            "x-message": "must be a non-empty list of {up_to, credits}",
            "items": {
                "type": "object",
                "required": ["up_to", "credits"],
                "additionalProperties": False,
                "x-message": "must be {up_to, credits}",
                "properties": {
                    "up_to": {"type": ["integer", "null"], "x-message": "must be an integer or null (unbounded)"},
                    "credits": _CREDITS,
                },
            },
        },
    },
}

_TERM = {
    "type": "object",
    "x-message": "must be a dict",
    "required": ["type"],
    "properties": {"type": {"enum": ["per_unit", "tiered"], "x-message": 'must be "per_unit" or "tiered"'}},
    "allOf": [
        {"if": {"required": ["type"], "properties": {"type": {"const": "per_unit"}}}, "then": _PER_UNIT},
        {"if": {"required": ["type"], "properties": {"type": {"const": "tiered"}}}, "then": _TIERED},
    ],
}

_MEDIA_PRICING = {
    "type": "object",
    "x-message": "must be a dict",
    "additionalProperties": False,
    "properties": {
        "base": _CREDITS,
        "terms": {"type": "array", "items": _TERM, "x-message": "must be a list"},
    },
}

_CHAT_PRICING = {
    "type": "object",
    "x-message": "must be a dict",
    "required": ["input_per_1k_tokens", "output_per_1k_tokens"],
    "additionalProperties": False,
    "properties": {
        "input_per_1k_tokens": {**_CREDITS, "x-message": "must be an integer >= 0 (credits per 1,000 tokens)"},
        "output_per_1k_tokens": {**_CREDITS, "x-message": "must be an integer >= 0 (credits per 1,000 tokens)"},
    },
}


def _kind_is(*kinds: str) -> dict[str, Any]:
    return {"required": ["kind"], "properties": {"kind": {"enum": list(kinds)}}}


ENTRY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "A RIVYA_API['MODELS'] entry",
    "type": "object",
    "x-message": "must be a dict",
    "required": ["id", "kind", "description", "provider", "pricing"],
    "additionalProperties": False,
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
            "x-message": "must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        },
        "kind": {"enum": list(KINDS), "x-message": f"must be one of {', '.join(KINDS)}"},
        "description": {"type": "string", "pattern": r"\S", "x-message": "must be a non-empty string"},
        "provider": {"type": "string", "pattern": r"\.", "x-message": "must be the dotted path of a provider class"},
        "options": {"type": "object", "x-message": "must be a dict"},
        # Checked as a JSON Schema of its own (spec.schema_problems).
        "parameters": True,
        "pricing": True,
        "limits": {
            "type": "object",
            "x-message": "must be a dict of integers",
            "additionalProperties": {"type": "integer", "minimum": 0, "x-message": "must be an integer >= 0"},
            "properties": {
                "timeout_seconds": {"type": "integer", "minimum": 1, "x-message": "must be an integer >= 1"}
            },
        },
        "upstream": {
            "type": "object",
            "required": ["base_url_env", "api_key_env"],
            "additionalProperties": False,
            "x-message": "must be a dict with exactly base_url_env and api_key_env",
            "properties": {"base_url_env": _ENV_NAME, "api_key_env": _ENV_NAME},
        },
        # A string or a datetime object: spec checks it.
        "created_at": True,
    },
    "allOf": [
        # Prices are checked once the kind is known: chat prices tokens, media prices parameters.
        {"if": _kind_is("chat"), "then": {"properties": {"pricing": _CHAT_PRICING}}},
        {"if": _kind_is(*MEDIA_KINDS), "then": {"properties": {"pricing": _MEDIA_PRICING}}},
    ],
}


def _is_integer(checker: Any, instance: Any) -> bool:
    # Credits are integers: 1.0 and True are not.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_array(checker: Any, instance: Any) -> bool:
    return isinstance(instance, (list, tuple))


def _is_object(checker: Any, instance: Any) -> bool:
    return isinstance(instance, Mapping)


_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"integer": _is_integer, "array": _is_array, "object": _is_object}
)
EntryValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPES)
_VALIDATOR = EntryValidator(ENTRY_SCHEMA)


def field_path(parts: Any) -> str:
    """``["pricing", "terms", 0, "unit"]`` -> ``pricing.terms[0].unit``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def entry_problems(entry: Any, kind: str | None = None) -> Iterator[tuple[str, str]]:
    """``(field, message)`` for everything in ``entry`` that breaks ``ENTRY_SCHEMA``."""
    for error in sorted(_VALIDATOR.iter_errors(entry), key=lambda e: list(map(str, e.absolute_path))):
        yield from _explain(error, entry, kind)


def _explain(error: jsonschema.ValidationError, entry: Any, kind: str | None) -> Iterator[tuple[str, str]]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = sorted(error.schema.get("properties", {}))
        owner = f" for a {kind} model" if path == ["pricing"] and kind else ""
        for key in sorted(set(error.instance) - set(allowed)):
            yield field_path([*path, key]), f"unknown field{owner} (allowed: {', '.join(allowed)})"
        return
    if error.validator == "required":
        for name in error.validator_value:
            if name not in error.instance:
                yield field_path([*path, name]), "is required" + (f" for {kind} models" if path == ["pricing"] else "")
        return
    message = error.schema.get("x-message") if isinstance(error.schema, Mapping) else None
    yield field_path(path) or "(entry)", message or error.message
