"""The model catalog: parsing, the system check, listing, validation, prices and providers."""

from __future__ import annotations

import logging
from typing import Any

import jsonschema
import pytest
from django.conf import settings as django_settings

from rivya_api.catalog.checks import CATALOG_ERROR_ID, check_model_catalog
from rivya_api.catalog.entry_schema import ENTRY_SCHEMA, entry_problems
from rivya_api.catalog.exceptions import (
    CatalogConfigError,
    CatalogError,
    InvalidInputError,
    MissingInputError,
    ModelNotFoundError,
    UnknownInputError,
)
from rivya_api.catalog.local_models import LOCAL_MODELS
from rivya_api.catalog.pricing import pricing_public
from rivya_api.catalog.selectors import (
    catalog_file_parameters,
    catalog_model_get,
    catalog_models,
    catalog_price,
    catalog_provider,
    catalog_token_price,
    catalog_validate_input,
)
from tests.rivya_api.catalog_fixtures import PROVIDERS, ImageTestProvider, catalog_entries

# --- the system check ------------------------------------------------------------------------------


def _entry(**changes: Any) -> dict[str, Any]:
    """The test video model with ``changes`` applied (``None`` removes a key)."""
    entry = next(e for e in catalog_entries() if e["id"] == "test-video")
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def _tiered(tiers: list[Any]) -> dict[str, Any]:
    return {"base": 1, "terms": [{"type": "tiered", "parameters": ["duration"], "tiers": tiers}]}


BAD_ENTRIES = {
    "missing id": ({"id": None}, None, "id"),
    "bad id": ({"id": "Not An Id"}, None, "id"),
    "unknown kind": ({"kind": "hologram"}, "test-video", "kind"),
    "no description": ({"description": "  "}, "test-video", "description"),
    "no provider": ({"provider": None}, "test-video", "provider"),
    "unknown field": ({"price": 3}, "test-video", "price"),
    "parameters not an object schema": ({"parameters": {"type": "array"}}, "test-video", "parameters.type"),
    "invalid json schema": (
        {"parameters": {"type": "object", "properties": {"n": {"type": "integr"}}}},
        "test-video",
        "parameters.properties.n.type",
    ),
    "default breaks its own schema": (
        {"parameters": {"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}}},
        "test-video",
        "parameters.properties.n.default",
    ),
    "required names nothing": (
        {"parameters": {"type": "object", "required": ["ghost"], "properties": {}}},
        "test-video",
        "parameters.required",
    ),
    "negative base": ({"pricing": {"base": -1}}, "test-video", "pricing.base"),
    "integral float credits": ({"pricing": {"base": 2.0}}, "test-video", "pricing.base"),
    "boolean limit": ({"limits": {"timeout_seconds": True}}, "test-video", "limits.timeout_seconds"),
    "tiered term without tiers": (
        {"pricing": {"terms": [{"type": "tiered", "parameters": ["duration"]}]}},
        "test-video",
        "pricing.terms[0].tiers",
    ),
    "fractional credits": ({"pricing": {"base": 1.5}}, "test-video", "pricing.base"),
    "unknown term type": ({"pricing": {"terms": [{"type": "percent"}]}}, "test-video", "pricing.terms[0].type"),
    "zero unit": (
        {"pricing": {"terms": [{"type": "per_unit", "parameter": "duration", "credits": 1, "unit": 0}]}},
        "test-video",
        "pricing.terms[0].unit",
    ),
    "bounded last tier": (
        {"pricing": _tiered([{"up_to": 5, "credits": 1}])},
        "test-video",
        "pricing.terms[0].tiers[0].up_to",
    ),
    "tiers not increasing": (
        {"pricing": _tiered([{"up_to": 5, "credits": 1}, {"up_to": 3, "credits": 2}, {"up_to": None, "credits": 3}])},
        "test-video",
        "pricing.terms[0].tiers[1].up_to",
    ),
    "chat rule on a media model": (
        {"pricing": {"input_per_1k_tokens": 1}},
        "test-video",
        "pricing.input_per_1k_tokens",
    ),
    "priced parameter not in schema": (
        {"pricing": {"terms": [{"type": "per_unit", "parameter": "frames", "credits": 1}]}},
        "test-video",
        "pricing",
    ),
    "priced parameter is text": (
        {"pricing": {"terms": [{"type": "per_unit", "parameter": "prompt", "credits": 1}]}},
        "test-video",
        "pricing",
    ),
    "negative limit": ({"limits": {"timeout_seconds": -5}}, "test-video", "limits.timeout_seconds"),
    "upstream without key variable": ({"upstream": {"base_url_env": "X_URL"}}, "test-video", "upstream.api_key_env"),
    "upstream variable is not a name": (
        {"upstream": {"base_url_env": "x url", "api_key_env": "X_KEY"}},
        "test-video",
        "upstream.base_url_env",
    ),
    "naive created_at": ({"created_at": "2026-01-01T00:00:00"}, "test-video", "created_at"),
    "provider of another kind": ({"provider": f"{PROVIDERS}.AudioTestProvider"}, "test-video", "provider"),
}


@pytest.mark.parametrize(("changes", "model_id", "field"), BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_invalid_entry_is_a_check_error_naming_model_and_field(catalog_models_setting, changes, model_id, field):
    catalog_models_setting([_entry(**changes)])
    errors = check_model_catalog()
    assert errors, "the check should fail"
    assert all(error.id == CATALOG_ERROR_ID for error in errors)
    messages = [error.msg for error in errors]
    assert any(f"field {field!r}" in message for message in messages), messages
    if model_id:
        assert any(f"model {model_id!r}" in message for message in messages), messages
    with pytest.raises(CatalogConfigError) as raised:
        catalog_models()
    assert raised.value.issues


def test_the_entry_schema_is_valid_json_schema_and_the_built_in_models_pass_it():
    jsonschema.Draft202012Validator.check_schema(ENTRY_SCHEMA)
    assert [list(entry_problems(entry)) for entry in LOCAL_MODELS] == [[] for _ in LOCAL_MODELS]


def test_unknown_fields_are_named_with_what_is_allowed():
    [(field, message)] = entry_problems({**_entry(), "price": 3})
    assert field == "price"
    assert message.startswith("unknown field (allowed: created_at, description, id, kind, limits,")


def test_chat_model_needs_both_token_prices(catalog_models_setting):
    entry = next(e for e in catalog_entries() if e["id"] == "test-chat")
    entry["pricing"] = {"input_per_1k_tokens": 1}
    catalog_models_setting([entry])
    assert any("'pricing.output_per_1k_tokens'" in error.msg for error in check_model_catalog())


def test_duplicate_ids_and_non_list_setting(catalog_models_setting):
    catalog_models_setting([_entry(), _entry()])
    assert any("is used by another model" in error.msg for error in check_model_catalog())
    catalog_models_setting({"id": "x"})
    assert any("must be a list" in error.msg for error in check_model_catalog())


def test_the_check_lists_every_problem_at_once(catalog_models_setting):
    catalog_models_setting([_entry(kind="hologram"), _entry(id="other", pricing={"base": -2})])
    fields = sorted(error.msg.split("field ")[1].split(":")[0] for error in check_model_catalog())
    assert fields == ["'kind'", "'pricing.base'"]


def test_reference_project_catalog_passes_the_check():
    assert check_model_catalog() == []


def test_every_listed_reference_media_model_accepts_a_prompt_alone():
    # The reference catalog lists a kind once its provider exists on this branch.
    for model in catalog_models():
        if model.kind == "chat":
            continue
        params = catalog_validate_input(model, {"prompt": "a lighthouse at dusk"})
        assert catalog_price(model, params) >= 0
    listed = {model.id for model in catalog_models()}
    assert "rivya-image-hd" not in listed  # its upstream variables are not set in tests


def test_system_check_is_registered(catalog_models_setting):
    from django.core import checks

    catalog_models_setting([_entry(kind="hologram")])
    assert any(error.id == CATALOG_ERROR_ID for error in checks.run_checks())


# --- listing ---------------------------------------------------------------------------------------


def test_listing_in_setting_order_and_filtering_by_kind(sample_catalog):
    assert [m.id for m in catalog_models()] == ["test-image", "test-video", "test-audio", "test-chat"]
    assert [m.id for m in catalog_models(kind="video")] == ["test-video"]
    assert [m.id for m in catalog_models(kind="chat")] == ["test-chat"]
    with pytest.raises(InvalidInputError) as raised:
        catalog_models(kind="hologram")
    assert raised.value.param == "kind"


def test_unimportable_provider_is_not_listed_and_logged_once(sample_catalog, caplog):
    caplog.set_level(logging.WARNING, logger="rivya_api.catalog")
    catalog_models()
    catalog_models()
    with pytest.raises(ModelNotFoundError):
        catalog_model_get("test-missing")
    records = [r for r in caplog.records if "test-missing" in r.getMessage()]
    assert len(records) == 1


def test_upstream_model_is_listed_only_with_both_variables(sample_catalog, monkeypatch):
    monkeypatch.delenv("RIVYA_TEST_UPSTREAM_URL", raising=False)
    monkeypatch.delenv("RIVYA_TEST_UPSTREAM_KEY", raising=False)
    with pytest.raises(ModelNotFoundError):
        catalog_model_get("test-upstream")
    monkeypatch.setenv("RIVYA_TEST_UPSTREAM_URL", "http://127.0.0.1:9/v1")
    assert "test-upstream" not in [m.id for m in catalog_models()]
    monkeypatch.setenv("RIVYA_TEST_UPSTREAM_KEY", "sk-upstream")
    model = catalog_model_get("test-upstream")
    provider = catalog_provider(model)
    assert provider.options == {
        "model": "upstream-secret-model-name",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-upstream",
    }


def test_provider_is_configured_hook_hides_a_model(catalog_models_setting):
    entry = {
        "id": "switch",
        "kind": "audio",
        "description": "d",
        "provider": f"{PROVIDERS}.SwitchableTestProvider",
        "parameters": {"type": "object"},
        "pricing": {"base": 1},
    }
    catalog_models_setting([{**entry, "options": {"enabled": False}}])
    assert catalog_models() == []
    catalog_models_setting([{**entry, "options": {"enabled": True}}])
    assert [m.id for m in catalog_models()] == ["switch"]


def test_unknown_model_is_a_typed_not_found(sample_catalog):
    with pytest.raises(ModelNotFoundError) as raised:
        catalog_model_get("gpt-nothing")
    assert raised.value.param == "model"


def test_catalog_reloads_when_the_setting_changes(sample_catalog, settings):
    assert catalog_model_get("test-audio").pricing.base == 1
    models = [dict(m) for m in sample_catalog]
    next(m for m in models if m["id"] == "test-audio")["pricing"] = {"base": 7}
    settings.RIVYA_API = {**settings.RIVYA_API, "MODELS": models}
    assert catalog_model_get("test-audio").pricing.base == 7


def test_parameters_come_from_the_provider_when_not_declared(sample_catalog):
    model = catalog_model_get("test-image")
    assert model.parameters == ImageTestProvider.parameters_schema()
    assert model.limits == {"timeout_seconds": 30}
    assert catalog_model_get("test-chat").limits == {"timeout_seconds": 300, "context_window": 4096}


def test_file_parameters_are_found_by_their_marker(sample_catalog):
    assert catalog_file_parameters(catalog_model_get("test-image")) == {"reference_image": ["image/png", "image/jpeg"]}
    assert catalog_file_parameters(catalog_model_get("test-video")) == {}


def test_provider_gets_a_copy_of_its_options(sample_catalog):
    model = catalog_model_get("test-image")
    provider = catalog_provider(model)
    assert isinstance(provider, ImageTestProvider)
    provider.options["palette"] = "cold"
    assert catalog_provider(model).options == {"palette": "warm"}


# --- input validation ------------------------------------------------------------------------------


def test_validation_fills_defaults_and_leaves_the_argument_alone(sample_catalog):
    model = catalog_model_get("test-image")
    given = {"prompt": "a fox"}
    assert catalog_validate_input(model, given) == {"prompt": "a fox", "width": 512, "height": 512}
    assert given == {"prompt": "a fox"}
    video = catalog_validate_input(catalog_model_get("test-video"), {"prompt": "waves"})
    assert video == {"prompt": "waves", "duration": 2, "tags": []}


@pytest.mark.parametrize(
    ("model_id", "params", "error", "param"),
    [
        ("test-image", {}, MissingInputError, "input.prompt"),
        ("test-image", {"prompt": "x", "style": "noir"}, UnknownInputError, "input.style"),
        ("test-image", {"prompt": "x", "width": 9000}, InvalidInputError, "input.width"),
        ("test-image", {"prompt": "x", "width": "wide"}, InvalidInputError, "input.width"),
        ("test-image", {"prompt": ""}, InvalidInputError, "input.prompt"),
        (
            "test-image",
            {"prompt": "x", "reference_image": "http://evil/x.png"},
            InvalidInputError,
            "input.reference_image",
        ),
        ("test-video", {"prompt": "x", "tags": ["ok", "far too long"]}, InvalidInputError, "input.tags[1]"),
        # No additionalProperties in the schema: unknown names are still refused.
        ("test-video", {"prompt": "x", "fps": 60}, UnknownInputError, "input.fps"),
        ("test-video", ["prompt"], InvalidInputError, "input"),
    ],
)
def test_validation_errors_name_the_parameter(sample_catalog, model_id, params, error, param):
    with pytest.raises(error) as raised:
        catalog_validate_input(catalog_model_get(model_id), params)
    assert raised.value.param == param
    assert param in str(raised.value)


# --- prices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "credits"),
    [(64, 64, 2), (512, 512, 2), (513, 512, 4), (1024, 1024, 4), (1024, 1025, 7), (2048, 2048, 7)],
)
def test_tiered_price_by_pixel_count(sample_catalog, width, height, credits):
    model = catalog_model_get("test-image")
    params = catalog_validate_input(model, {"prompt": "x", "width": width, "height": height})
    assert catalog_price(model, params) == credits


@pytest.mark.parametrize(("duration", "credits"), [(0.5, 7), (1, 7), (2, 10), (2.1, 13), (2.5, 13), (10, 34)])
def test_per_unit_price_rounds_started_units_up(sample_catalog, duration, credits):
    model = catalog_model_get("test-video")
    assert catalog_price(model, catalog_validate_input(model, {"prompt": "x", "duration": duration})) == credits


def test_price_never_depends_on_the_prompt(sample_catalog):
    model = catalog_model_get("test-image")
    short = catalog_price(model, catalog_validate_input(model, {"prompt": "x"}))
    long = catalog_price(model, catalog_validate_input(model, {"prompt": "x" * 500}))
    assert short == long == 2


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "credits"),
    [(0, 0, 0), (1, 0, 1), (1000, 0, 1), (1001, 0, 2), (1000, 1000, 4), (10, 334, 2), (2500, 500, 4)],
)
def test_token_price_rounds_up_to_whole_credits(sample_catalog, input_tokens, output_tokens, credits):
    model = catalog_model_get("test-chat")
    assert catalog_token_price(model, input_tokens=input_tokens, output_tokens=output_tokens) == credits


def test_prices_are_asked_of_the_right_kind(sample_catalog):
    with pytest.raises(CatalogError):
        catalog_price(catalog_model_get("test-chat"), {})
    with pytest.raises(CatalogError):
        catalog_token_price(catalog_model_get("test-image"), input_tokens=1, output_tokens=1)


def test_public_pricing_shows_the_rule_and_the_default_price(sample_catalog):
    image = pricing_public(catalog_model_get("test-image"))
    assert image["default_credits"] == 2
    assert image["terms"][0]["tiers"][-1] == {"up_to": None, "credits": 5}
    assert (
        image["summary"]
        == "2 credits per generation; plus, by width × height: 0 up to 262144, 2 up to 1048576, 5 above 1048576."
    )
    chat = pricing_public(catalog_model_get("test-chat"))
    assert chat == {
        "currency": "credits",
        "input_per_1k_tokens": 1,
        "output_per_1k_tokens": 3,
        "minimum_per_turn": 1,
        "summary": chat["summary"],
    }


def test_reference_settings_module_declares_the_catalog():
    ids = [entry["id"] for entry in django_settings.RIVYA_API["MODELS"]]
    assert {"rivya-image-1", "rivya-audio-1", "rivya-video-1", "rivya-chat-1"} <= set(ids)


def test_an_empty_catalog_warns_with_the_opt_in(catalog_models_setting):
    from rivya_api.catalog.checks import EMPTY_CATALOG_ID

    catalog_models_setting([])
    [warning] = check_model_catalog()
    assert warning.id == EMPTY_CATALOG_ID
    assert "rivya_api.catalog.local_models.LOCAL_MODELS" in warning.hint


def test_one_line_opts_into_the_built_in_local_models(catalog_models_setting):
    """``RIVYA_API["MODELS"]`` may name the built-in list by dotted path."""
    catalog_models_setting("rivya_api.catalog.local_models.LOCAL_MODELS")
    assert check_model_catalog() == []
    listed = {model.id: model.kind for model in catalog_models()}
    assert listed == {
        "rivya-image-1": "image",
        "rivya-audio-1": "audio",
        "rivya-video-1": "video",
        "rivya-chat-1": "chat",
    }
