"""The model catalog's shape: parsing and validating ``RIVYA_API["MODELS"]``.

Each entry of the setting is a dict::

    {
        "id": "rivya-image-1",                 # public model id, [a-z0-9._-]
        "kind": "image",                       # image | video | audio | chat
        "description": "…",                    # shown to API users
        "provider": "pkg.module.ProviderClass",  # dotted path
        "options": {…},                        # passed to the provider; never public
        "parameters": {"type": "object", …},   # optional: JSON Schema of the input,
                                               # else the provider's parameters_schema(options)
        "pricing": {…},                        # see rivya_api.catalog.pricing
        "limits": {"timeout_seconds": 60},     # public integers
        "upstream": {"base_url_env": "…", "api_key_env": "…"},  # optional
        "created_at": "2026-05-01T00:00:00Z",  # optional
    }

Parsing happens in two steps. ``parse_entries`` checks what can be checked
without importing anything (the entry's shape is the JSON Schema in
``entry_schema``); ``resolve_entry`` imports the provider, settles the
``parameters`` schema and checks the price rule against it. Both collect
``CatalogIssue``s naming the model and the field instead of stopping at the
first, so the system check can list every problem at once. A provider that
cannot be imported is not an issue: the model is simply not listed here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema
from django.utils.module_loading import import_string

from rivya_api.catalog.entry_schema import KINDS, entry_problems, field_path

DEFAULT_CREATED_AT = datetime(2026, 5, 1, tzinfo=UTC)
# Every model has a job time limit; the generations runner reads it.
DEFAULT_LIMITS = {"timeout_seconds": 300}

# Marks a schema property as a Files API id (shared with the providers' schemas).
FILE_KEYWORD = "x-rivya-file"


@dataclass(frozen=True)
class CatalogIssue:
    """One problem with the catalog setting: which entry, which field, what is wrong."""

    index: int
    model_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        model = f" (model {self.model_id!r})" if self.model_id else ""
        return f'RIVYA_API["MODELS"][{self.index}]{model}, field {self.field!r}: {self.message}'


@dataclass(frozen=True)
class PriceTerm:
    """One additive part of a media price rule.

    ``per_unit``: ``credits`` for every started ``unit`` of one numeric parameter.
    ``tiered``: the product of ``parameters`` (e.g. width × height) picks the first
    tier whose ``up_to`` is at least that product (``None`` is unbounded).
    """

    type: str
    parameters: tuple[str, ...]
    credits: int = 0
    unit: int = 1
    tiers: tuple[tuple[int | None, int], ...] = ()


@dataclass(frozen=True)
class PriceRule:
    """Integer credits. Media: ``base`` plus ``terms``. Chat: credits per 1,000 tokens."""

    base: int = 0
    terms: tuple[PriceTerm, ...] = ()
    input_per_1k_tokens: int = 0
    output_per_1k_tokens: int = 0

    def parameters(self) -> set[str]:
        return {name for term in self.terms for name in term.parameters}


@dataclass(frozen=True)
class Upstream:
    """Names of the environment variables holding an upstream's base URL and key."""

    base_url_env: str
    api_key_env: str

    def configured(self, environ: Mapping[str, str] | None = None) -> bool:
        environ = os.environ if environ is None else environ
        return bool(environ.get(self.base_url_env)) and bool(environ.get(self.api_key_env))

    def values(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        environ = os.environ if environ is None else environ
        return {"base_url": environ.get(self.base_url_env, ""), "api_key": environ.get(self.api_key_env, "")}


@dataclass(frozen=True, eq=False)
class CatalogModel:
    """A model of the catalog. ``provider``, ``options`` and ``upstream`` are never public.

    Shared by every caller: treat the dicts as read-only (``provider_options()`` and the
    validation helpers hand out copies).
    """

    id: str
    kind: str
    description: str
    provider: str
    options: Mapping[str, Any]
    parameters: Mapping[str, Any]
    pricing: PriceRule
    limits: Mapping[str, int]
    upstream: Upstream | None
    created_at: datetime
    provider_class: type | None = field(default=None, repr=False)

    @property
    def timeout_seconds(self) -> int:
        return int(self.limits["timeout_seconds"])

    def provider_options(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """What the provider is built with: ``options`` plus the upstream's ``base_url``/``api_key``."""
        options = copy.deepcopy(dict(self.options))
        if self.upstream is not None:
            options.update(self.upstream.values(environ))
        return options


@dataclass
class _Entry:
    """An entry that passed ``parse_entries``; ``parameters`` may still be None (from the provider)."""

    index: int
    values: dict[str, Any]


class _Issues:
    def __init__(self) -> None:
        self.items: list[CatalogIssue] = []

    def add(self, index: int, model_id: str | None, field_name: str, message: str) -> None:
        self.items.append(CatalogIssue(index, model_id, field_name, message))


def parse_entries(raw: Any) -> tuple[list[_Entry], list[CatalogIssue]]:
    """Check every entry of the setting without importing providers."""
    issues = _Issues()
    entries: list[_Entry] = []
    if not isinstance(raw, (list, tuple)):
        issues.add(0, None, "MODELS", "must be a list of model dicts")
        return entries, issues.items
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            issues.add(index, None, "(entry)", "must be a dict")
            continue
        model_id = entry.get("id") if isinstance(entry.get("id"), str) else None
        before = len(issues.items)
        _parse_entry(index, model_id, entry, issues)
        if model_id is not None:
            if model_id in seen:
                issues.add(index, model_id, "id", "is used by another model")
            seen.add(model_id)
        if len(issues.items) == before:
            entries.append(_Entry(index, dict(entry)))
    return entries, issues.items


def _parse_entry(index: int, model_id: str | None, entry: Mapping[str, Any], issues: _Issues) -> None:
    kind = entry.get("kind") if entry.get("kind") in KINDS else None
    problems = list(entry_problems(entry, kind))
    if "parameters" in entry:
        problems += schema_problems(entry["parameters"])
    if "created_at" in entry:
        try:
            _parse_created_at(entry["created_at"])
        except (TypeError, ValueError):
            problems.append(("created_at", "must be an ISO 8601 timestamp with a timezone"))
    if kind and not any(field_name.startswith("pricing") for field_name, _ in problems):
        problems += _tier_order_problems(entry["pricing"])
    for field_name, message in problems:
        issues.add(index, model_id, field_name, message)


def _parse_created_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value)
    else:
        raise TypeError("not a timestamp")
    if parsed.tzinfo is None:
        raise ValueError("naive timestamp")
    return parsed.astimezone(UTC)


def schema_problems(schema: Any, field_name: str = "parameters") -> list[tuple[str, str]]:
    """Problems with a ``parameters`` JSON Schema: must be a valid draft 2020-12 object schema."""
    if not isinstance(schema, Mapping):
        return [(field_name, "must be a JSON Schema object (a dict)")]
    problems: list[tuple[str, str]] = []
    if schema.get("type") != "object":
        problems.append((f"{field_name}.type", 'must be "object"'))
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(part) for part in exc.absolute_path)
        problems.append((f"{field_name}.{where}" if where else field_name, f"invalid JSON Schema: {exc.message}"))
        return problems
    properties = schema.get("properties") or {}
    for name, prop in properties.items():
        if isinstance(prop, Mapping) and "default" in prop:
            errors = list(jsonschema.Draft202012Validator(prop).iter_errors(prop["default"]))
            if errors:
                problems.append((f"{field_name}.properties.{name}.default", f"does not match: {errors[0].message}"))
    for name in schema.get("required") or []:
        if name not in properties:
            problems.append((f"{field_name}.required", f"names {name!r}, which is not in properties"))
    return problems


def _tier_order_problems(pricing: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Tiers rise and end unbounded, so every input has exactly one price (the schema checked their shape)."""
    problems = []
    for position, term in enumerate(pricing.get("terms", ())):
        if term["type"] != "tiered":
            continue
        previous = -1
        for step, tier in enumerate(term["tiers"]):
            where = field_path(["pricing", "terms", position, "tiers", step, "up_to"])
            up_to, last = tier["up_to"], step == len(term["tiers"]) - 1
            if up_to is None and not last:
                problems.append((where, "only the last tier may be unbounded (null)"))
            elif up_to is not None and up_to <= previous:
                problems.append((where, "must be an integer, increasing from tier to tier"))
            elif last and up_to is not None:
                problems.append((where, "the last tier must be unbounded (null), so every input has a price"))
            previous = up_to if up_to is not None else previous
    return problems


def build_price_rule(pricing: Mapping[str, Any]) -> PriceRule:
    terms = []
    for term in pricing.get("terms", []):
        if term["type"] == "per_unit":
            terms.append(PriceTerm("per_unit", (term["parameter"],), credits=term["credits"], unit=term.get("unit", 1)))
        else:
            tiers = tuple((tier["up_to"], tier["credits"]) for tier in term["tiers"])
            terms.append(PriceTerm("tiered", tuple(term["parameters"]), tiers=tiers))
    return PriceRule(
        base=pricing.get("base", 0),
        terms=tuple(terms),
        input_per_1k_tokens=pricing.get("input_per_1k_tokens", 0),
        output_per_1k_tokens=pricing.get("output_per_1k_tokens", 0),
    )


def import_provider(path: str) -> type:
    """Import a provider class; ImportError (of any kind) when it is not there."""
    try:
        provider = import_string(path)
    except ImportError:
        raise
    except Exception as exc:  # a provider module that fails while importing is just as absent
        raise ImportError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(provider, type):
        raise ImportError(f"{path} is not a class")
    return provider


def resolve_entry(entry: _Entry, provider_class: type) -> tuple[CatalogModel | None, list[CatalogIssue]]:
    """Build the model from a parsed entry and its imported provider class."""
    values = entry.values
    model_id = values["id"]
    issues = _Issues()

    def add(field_name: str, message: str) -> None:
        issues.add(entry.index, model_id, field_name, message)

    provider_kind = getattr(provider_class, "kind", None)
    if provider_kind is not None and provider_kind != values["kind"]:
        add("provider", f"is a {provider_kind!r} provider but the model's kind is {values['kind']!r}")
    options = copy.deepcopy(dict(values.get("options") or {}))
    parameters, problems = _parameters_resolve(values.get("parameters"), provider_class, options)
    for field_name, message in problems:
        add(field_name, message)
    if parameters is None:
        return None, issues.items
    rule = build_price_rule(values["pricing"])
    for field_name, message in _priced_parameter_problems(rule, parameters):
        add(field_name, message)
    if issues.items:
        return None, issues.items
    upstream = values.get("upstream")
    model = CatalogModel(
        id=model_id,
        kind=values["kind"],
        description=values["description"].strip(),
        provider=values["provider"],
        options=options,
        parameters=parameters,
        pricing=rule,
        limits={**DEFAULT_LIMITS, **dict(values.get("limits") or {})},
        upstream=Upstream(**upstream) if upstream else None,
        created_at=_parse_created_at(values["created_at"]) if "created_at" in values else DEFAULT_CREATED_AT,
        provider_class=provider_class,
    )
    return model, issues.items


def _parameters_resolve(
    parameters: Any, provider_class: type, options: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """The entry's ``parameters`` schema, else the provider's ``parameters_schema(options)``, and its problems.

    The schema is None when there is none to be had: the provider has no ``parameters_schema``, or it failed.
    """
    problems: list[tuple[str, str]] = []
    if parameters is None:
        schema_of = getattr(provider_class, "parameters_schema", None)
        if schema_of is None:
            return None, [("parameters", "is required: the provider class has no parameters_schema(options)")]
        try:
            parameters = schema_of(copy.deepcopy(options))
        except Exception as exc:  # report, do not crash the check
            return None, [
                ("parameters", f"the provider's parameters_schema(options) failed: {type(exc).__name__}: {exc}")
            ]
        problems = schema_problems(parameters, "parameters (from the provider)")
    return copy.deepcopy(dict(parameters or {})), problems


def _priced_parameter_problems(rule: PriceRule, parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every parameter the price rule reads is a number the schema defines, with a default or required."""
    problems = []
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    for name in sorted(rule.parameters()):
        prop = properties.get(name)
        if not isinstance(prop, Mapping):
            problems.append(("pricing", f"prices parameter {name!r}, which the parameters schema does not define"))
            continue
        types = prop.get("type")
        types = types if isinstance(types, list) else [types]
        if not set(types) <= {"integer", "number"}:
            problems.append(("pricing", f"prices parameter {name!r}, which is not an integer or number"))
        if "default" not in prop and name not in required:
            # Otherwise the price of a request that leaves it out would be unknown.
            problems.append(("pricing", f"prices parameter {name!r}, which has no default and is not required"))
    return problems


def file_parameters(schema: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{parameter: accepted content types}`` for every input property marked ``x-rivya-file``."""
    found: dict[str, list[str]] = {}
    for name, prop in (schema.get("properties") or {}).items():
        marker = prop.get(FILE_KEYWORD) if isinstance(prop, Mapping) else None
        if marker is not None:
            found[name] = list((marker or {}).get("content_types") or [])
    return found
