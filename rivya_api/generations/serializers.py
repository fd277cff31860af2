"""Input and output serializers for generations."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from rivya_api.catalog.exceptions import CatalogError
from rivya_api.catalog.selectors import catalog_model_get, catalog_models
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import MetadataField, StrictSerializer
from rivya_api.files.serializers import FileOutputSerializer
from rivya_api.generations.presenters import generation_payload


class GenerationCreateInputSerializer(StrictSerializer):
    model = serializers.CharField(max_length=100, help_text="A model id from GET /api/v1/models.")
    input = serializers.JSONField(
        default=dict, help_text="The model's parameters; validated against its `parameters` JSON Schema."
    )
    metadata = MetadataField(
        max_keys=16,
        required=False,
        help_text="Up to 16 string pairs of yours (keys up to 40 characters, values up to 500), returned with "
        "the task and in its webhooks.",
    )
    max_credits = serializers.IntegerField(
        min_value=0,
        required=False,
        allow_null=True,
        help_text=(
            "A ceiling of yours: when the price is above it the request is refused with 402 "
            "`max_credits_exceeded` and nothing is reserved (unlike `insufficient_credits`, topping up "
            "does not help; raise the ceiling or lower the price)."
        ),
    )
    dry_run = serializers.BooleanField(default=False, help_text="Return the price and create nothing.")

    def unknown_field_message(self, name: str, data: dict[str, Any]) -> str:
        """A model parameter sent next to ``model`` (``prompt`` most often) is told to move into ``input``."""
        model_id = data.get("model") if isinstance(data.get("model"), str) else None
        if name in _parameter_names(model_id):
            example = json.dumps({"model": model_id or "…", "input": {name: "…"}}, ensure_ascii=False)
            return f"{name!r} is a model parameter: put it inside input, e.g. {example}."
        return super().unknown_field_message(name, data) + " The model's parameters go inside input."

    def validate_input(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("input must be a JSON object.")
        return value


def _parameter_names(model_id: str | None) -> set[str]:
    """The input parameters of ``model_id``, or of every listed model when it names none."""
    try:
        models = [catalog_model_get(model_id)] if model_id else catalog_models()
    except CatalogError:
        models = catalog_models()
    return {name for model in models for name in (model.parameters.get("properties") or {})}


class GenerationErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


@extend_schema_serializer(deprecate_fields=["refunded"])
class GenerationCreditsSerializer(serializers.Serializer):
    reserved = serializers.IntegerField(help_text="Held at submission: the quoted price.")
    charged = serializers.IntegerField(help_text="Captured on success: exactly the quoted price.")
    released = serializers.IntegerField(
        help_text="Returned uncharged on failure or cancel: everything reserved. 0 until then, and on success."
    )
    refunded = serializers.IntegerField(
        help_text=(
            "Deprecated: the first name of `released`, always the same value; read `released`. "
            "Removed in API v2. (A refund returns credits that were charged; see the ledger's `refund`.)"
        )
    )


class GenerationOutputSerializer(serializers.Serializer):
    """Rendered by ``generation_payload``; the fields below describe it for OpenAPI."""

    id = serializers.CharField(help_text="Public task id, `task_…`.")
    object = constant_field("generation")
    model = serializers.CharField()
    kind = serializers.ChoiceField(choices=["image", "video", "audio"])
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed", "canceled"])
    progress = serializers.IntegerField(min_value=0, max_value=100)
    input = serializers.DictField()
    metadata = serializers.DictField(child=serializers.CharField())
    outputs = FileOutputSerializer(many=True, help_text="Output files; each `url` is absolute, signed and fresh.")
    error = GenerationErrorSerializer(allow_null=True)
    credits = GenerationCreditsSerializer()
    cancel_requested = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return generation_payload(instance, request=self.context.get("request"))


class GenerationQuoteSerializer(serializers.Serializer):
    object = constant_field("generation.quote")
    model = serializers.CharField()
    price = serializers.IntegerField(help_text="Credits this generation would reserve and, on success, charge.")
    input = serializers.DictField(help_text="The input as validated, defaults applied.")
