"""The Model API Reference's content, derived from the catalog: parameter rows and examples."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rivya_api.catalog.pricing import default_price, pricing_public
from rivya_api.catalog.spec import FILE_KEYWORD, CatalogModel

SAMPLE_PROMPTS = {
    "image": "A lighthouse on a cliff at dusk, watercolor",
    "video": "Waves rolling onto a beach at sunrise",
    "audio": "Welcome to Rivya. Your generation is ready.",
}


@dataclass(frozen=True)
class ParameterRow:
    name: str
    type: str
    required: bool
    default: str
    constraints: str
    description: str


def _type_text(prop: Mapping[str, Any]) -> str:
    if FILE_KEYWORD in prop:
        types = (prop[FILE_KEYWORD] or {}).get("content_types") or []
        return "file id" + (f" ({', '.join(types)})" if types else "")
    kind = prop.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if kind == "array" and isinstance(prop.get("items"), Mapping):
        text = f"array of {_type_text(prop['items'])}"
    return text


def _constraints(prop: Mapping[str, Any]) -> str:
    parts = []
    if "enum" in prop:
        parts.append("one of " + ", ".join(json.dumps(value) for value in prop["enum"]))
    bounds = [("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")]
    parts.extend(f"{sign} {prop[key]}" for key, sign in bounds if key in prop)
    if "multipleOf" in prop:
        parts.append(f"multiple of {prop['multipleOf']}")
    if "minLength" in prop or "maxLength" in prop:
        parts.append(f"{prop.get('minLength', 0)}–{prop.get('maxLength', '∞')} characters")
    if "maxItems" in prop:
        parts.append(f"at most {prop['maxItems']} items")
    return "; ".join(parts)


def parameter_rows(model: CatalogModel) -> list[ParameterRow]:
    schema = model.parameters
    required = set(schema.get("required") or [])
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        rows.append(
            ParameterRow(
                name=name,
                type=_type_text(prop),
                required=name in required,
                default=json.dumps(prop["default"]) if "default" in prop else "",
                constraints=_constraints(prop),
                description=str(prop.get("description", "")),
            )
        )
    return rows


def example_input(model: CatalogModel) -> dict[str, Any]:
    """The smallest valid input: every required parameter, with a sample or its default."""
    schema = model.parameters
    properties = schema.get("properties") or {}
    example: dict[str, Any] = {}
    for name in schema.get("required") or []:
        prop = properties.get(name, {})
        if name == "prompt":
            example[name] = SAMPLE_PROMPTS.get(model.kind, "Hello")
        elif "default" in prop:
            example[name] = prop["default"]
        elif "enum" in prop:
            example[name] = prop["enum"][0]
        elif prop.get("type") in ("integer", "number"):
            example[name] = prop.get("minimum", 1)
        else:
            example[name] = "…"
    return example


def example_request(model: CatalogModel) -> tuple[str, dict[str, Any]]:
    """``(path, body)`` of a minimal request to this model."""
    if model.kind == "chat":
        body = {"model": model.id, "messages": [{"role": "user", "content": "Say hello in one sentence."}]}
        return "/api/v1/chat/completions", body
    return "/api/v1/generations", {"model": model.id, "input": example_input(model)}


def model_entry(model: CatalogModel) -> dict[str, Any]:
    """Everything the reference shows about one model."""
    path, body = example_request(model)
    return {
        "model": model,
        "rows": parameter_rows(model),
        "pricing": pricing_public(model),
        "default_price": default_price(model) if model.kind != "chat" else None,
        "limits": dict(model.limits),
        "request_path": path,
        "request_body": json.dumps(body, indent=2, ensure_ascii=False),
    }
