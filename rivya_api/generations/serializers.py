"""Input and output serializers for generations."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from rivya_api.common.schema import constant_field
from rivya_api.files.serializers import FileOutputSerializer
from rivya_api.generations.presenters import generation_payload


class StrictSerializer(serializers.Serializer):
    """Refuses unknown top-level fields with a 400 naming them, instead of ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["Unknown field."]}, code="unknown_parameter")
        return super().to_internal_value(data)


class GenerationCreateInputSerializer(StrictSerializer):
    model = serializers.CharField(max_length=100, help_text="A model id from GET /api/v1/models.")
    input = serializers.JSONField(
        default=dict, help_text="The model's parameters; validated against its `parameters` JSON Schema."
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=500, allow_blank=True),
        required=False,
        help_text="Up to 16 string values of yours, returned with the task and in its webhooks.",
    )
    max_credits = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, help_text="Refuse (402) instead of spending more than this."
    )
    dry_run = serializers.BooleanField(default=False, help_text="Return the price and create nothing.")

    def validate_input(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("input must be a JSON object.")
        return value

    def validate_metadata(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 16:
            raise serializers.ValidationError("metadata takes at most 16 keys.")
        return value


class GenerationErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class GenerationCreditsSerializer(serializers.Serializer):
    reserved = serializers.IntegerField(help_text="Held at submission: the quoted price.")
    charged = serializers.IntegerField(help_text="Captured on success: exactly the quoted price.")
    refunded = serializers.IntegerField(help_text="Released on failure or cancel: everything reserved.")


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
