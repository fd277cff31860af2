"""Reading the model catalog: what generations, chat, the API and the docs call.

    catalog_models(kind=None)                       -> listed models, in setting order
    catalog_model_get(model_id)                     -> one listed model, or ModelNotFoundError
    catalog_validate_input(model, params)           -> params validated, defaults applied
    catalog_price(model, params)                    -> integer credits of a media request
    catalog_token_price(model, input_tokens=, output_tokens=) -> integer credits of a chat turn
    catalog_provider(model)                         -> a provider instance for one job
    catalog_file_parameters(model)                  -> {input name: accepted content types}

A model is *listed* when its provider class imports, its upstream's variables
(if any) are set, and the provider's ``is_configured(options)`` (if it has one)
is true. Nothing here touches the database.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from rivya_api.catalog import pricing
from rivya_api.catalog.exceptions import (
    CatalogError,
    InvalidInputError,
    MissingInputError,
    ModelNotFoundError,
    UnknownInputError,
)
from rivya_api.catalog.registry import catalog_reload, is_listed, loaded_catalog
from rivya_api.catalog.spec import KINDS, CatalogModel, file_parameters
from rivya_api.common import hostile

__all__ = [
    "catalog_file_parameters",
    "catalog_model_get",
    "catalog_models",
    "catalog_price",
    "catalog_provider",
    "catalog_reload",
    "catalog_token_price",
    "catalog_validate_input",
]


def catalog_models(kind: str | None = None) -> list[CatalogModel]:
    """Every listed model (of ``kind``, if given), in the order of the setting."""
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}.", param="kind")
    return [
        model for model in loaded_catalog().models.values() if (kind is None or model.kind == kind) and is_listed(model)
    ]


def catalog_model_get(model_id: str) -> CatalogModel:
    """The listed model with this public id; ``ModelNotFoundError`` (param ``model``) otherwise."""
    model = loaded_catalog().models.get(model_id) if isinstance(model_id, str) else None
    if model is None or not is_listed(model):
        raise ModelNotFoundError(f"No model {model_id!r}. GET /api/v1/models lists the available models.")
    return model


def catalog_validate_input(model: CatalogModel, params: Any) -> dict[str, Any]:
    """``params`` checked against the model's ``parameters`` schema, with its defaults filled in.

    Returns a new dict (the argument is not changed). Raises ``InvalidInputError``
    (or ``MissingInputError`` / ``UnknownInputError``) whose ``param`` names the
    parameter as ``input.<name>`` (``input.<name>[i]`` inside arrays). A property
    the schema does not define is refused even when the schema does not say
    ``additionalProperties: false``: silently ignoring a parameter that the client
    believes changes the result is worse than a clear 400.
    """
    if not isinstance(params, Mapping):
        raise InvalidInputError("input must be a JSON object.", param="input")
    schema = model.parameters
    values = copy.deepcopy(dict(params))
    properties = schema.get("properties") or {}
    if "additionalProperties" not in schema and "patternProperties" not in schema:
        unknown = sorted(name for name in values if name not in properties)
        if unknown:
            param = f"input.{hostile.label(unknown[0])}"
            message = f"Unknown parameter {param} for model {model.id}; {_known(properties)}."
            raise UnknownInputError(message, param=param)
    _apply_defaults(schema, values)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(values))
    if error is not None:
        raise _input_error(error, model)
    return _as_integers(schema, values)


def _as_integers(schema: Any, instance: Any) -> Any:
    """Integral numbers where the schema says ``integer`` become ints (JSON Schema counts 24.0 as an
    integer, so it passed validation): a provider then gets the integer it was promised, never 24.0."""
    if not isinstance(schema, Mapping):
        return instance
    types = schema.get("type")
    if isinstance(instance, float) and (types == "integer" or (isinstance(types, list) and "integer" in types)):
        return int(instance) if instance.is_integer() else instance
    if isinstance(instance, dict):
        properties = schema.get("properties") or {}
        return {name: _as_integers(properties.get(name), value) for name, value in instance.items()}
    if isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
        return [_as_integers(schema["items"], item) for item in instance]
    return instance


def _apply_defaults(schema: Mapping[str, Any], instance: Any) -> None:
    """Fill missing properties that have a ``default``, recursively through nested objects."""
    if not isinstance(instance, dict) or not isinstance(schema, Mapping):
        return
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        if name not in instance and "default" in prop:
            instance[name] = copy.deepcopy(prop["default"])
        if name in instance:
            _apply_defaults(prop, instance[name])


def _known(names: Any) -> str:
    """The parameters a client may send instead of an unknown one."""
    names = sorted(names)
    return f"its parameters are {', '.join(names)}" if names else "it takes no parameters here"


def _param_path(parts: list[Any]) -> str:
    path = "input"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{hostile.label(str(part))}"
    return path


def _input_error(error: jsonschema.ValidationError, model: CatalogModel) -> InvalidInputError:
    parts = list(error.absolute_path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        param = _param_path([*parts, missing[0]]) if missing else _param_path(parts)
        return MissingInputError(f"Missing required parameter {param}.", param=param)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set((error.schema.get("properties") or {}).keys())
        extra = sorted(name for name in error.instance if name not in known)
        if extra:
            param = _param_path([*parts, extra[0]])
            return UnknownInputError(f"Unknown parameter {param} for model {model.id}; {_known(known)}.", param=param)
    param = _param_path(parts)
    return InvalidInputError(f"Invalid {param}: {_short_message(error)}.", param=param)


def _short_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, with the offending value (which it quotes whole) cut to a short prefix."""
    shown = repr(error.instance)
    if len(shown) <= hostile.QUOTE_LIMIT:
        return error.message
    return error.message.replace(shown, shown[: hostile.QUOTE_LIMIT + 1] + "…" + shown[-1])


def catalog_price(model: CatalogModel, params: Mapping[str, Any]) -> int:
    """Integer credits of one media request; ``params`` as returned by ``catalog_validate_input``.

    Depends only on the parameters (never the prompt's text), so it is known at
    submission and the same for every retry of the same input.
    """
    if model.kind == "chat":
        raise CatalogError(f"{model.id} is a chat model: price turns with catalog_token_price().")
    return pricing.media_price(model.pricing, params)


def catalog_token_price(model: CatalogModel, *, input_tokens: int, output_tokens: int) -> int:
    """Integer credits of a chat turn: the token price rounded up, at least 1 if any token was used.

    Use it for the reservation (prompt tokens + the turn's max output tokens) and
    for the settlement (the real usage).
    """
    if model.kind != "chat":
        raise CatalogError(f"{model.id} is not a chat model: price it with catalog_price().")
    return pricing.token_price(model.pricing, input_tokens=input_tokens, output_tokens=output_tokens)


def catalog_provider(model: CatalogModel) -> Any:
    """A new provider instance for one job: ``provider_class(options)``.

    ``options`` is a copy of the catalog entry's ``options`` plus, for models with
    an ``upstream``, ``base_url`` and ``api_key`` read from the named variables.
    """
    if model.provider_class is None:
        raise ModelNotFoundError(f"Model {model.id!r} has no provider here.")
    return model.provider_class(model.provider_options())


def catalog_file_parameters(model: CatalogModel) -> dict[str, list[str]]:
    """Input parameters that take a Files API id, with the content types each accepts ([] = any)."""
    return file_parameters(model.parameters)
