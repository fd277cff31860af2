"""The public model object. Provider, options and upstream never appear in it."""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from rivya_api.catalog.pricing import pricing_public
from rivya_api.catalog.spec import KINDS, CatalogModel
from rivya_api.common.schema import constant_field


class PriceTierSerializer(serializers.Serializer):
    up_to = serializers.IntegerField(allow_null=True, help_text="Largest product covered; null = unbounded.")
    credits = serializers.IntegerField()


PRICE_TERM_TYPES = ["per_unit", "tiered"]  # ENUM_NAME_OVERRIDES: PriceTermTypeEnum


class PriceTermSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=PRICE_TERM_TYPES)
    parameter = serializers.CharField(required=False, help_text="per_unit: the priced parameter.")
    unit = serializers.IntegerField(required=False, help_text="per_unit: size of one unit; started units count.")
    credits = serializers.IntegerField(required=False, help_text="per_unit: credits per started unit.")
    parameters = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="tiered: parameters whose product picks a tier."
    )
    tiers = PriceTierSerializer(many=True, required=False, help_text="tiered: the first tier covering the product.")


@extend_schema_serializer(component_name="MediaPricing")
class MediaPricingSerializer(serializers.Serializer):
    currency = constant_field("credits")
    base = serializers.IntegerField(help_text="Credits of every generation.")
    terms = PriceTermSerializer(many=True, help_text="Added to base, each computed from the input.")
    default_credits = serializers.IntegerField(
        allow_null=True, help_text="Price of a request that sets only the required parameters."
    )
    summary = serializers.CharField()


@extend_schema_serializer(component_name="ChatPricing")
class ChatPricingSerializer(serializers.Serializer):
    currency = constant_field("credits")
    input_per_1k_tokens = serializers.IntegerField()
    output_per_1k_tokens = serializers.IntegerField()
    minimum_per_turn = serializers.IntegerField(help_text="A turn that used any tokens costs at least this much.")
    summary = serializers.CharField()


PRICING_SCHEMA = PolymorphicProxySerializer(
    component_name="ModelPricing",
    serializers=[MediaPricingSerializer, ChatPricingSerializer],
    resource_type_field_name=None,
)


@extend_schema_serializer(component_name="Model")
class ModelOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Public model id, used as `model` in requests.")
    object = constant_field("model")
    kind = serializers.ChoiceField(choices=KINDS)
    description = serializers.CharField()
    parameters = serializers.SerializerMethodField()
    pricing = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": True,
            "description": "JSON Schema (draft 2020-12) of the request's `input`. Properties marked "
            "`x-rivya-file` take a Files API id (`file_…`) of the listed content types.",
        }
    )
    def get_parameters(self, model: CatalogModel) -> dict[str, Any]:
        return copy.deepcopy(dict(model.parameters))

    @extend_schema_field(PRICING_SCHEMA)
    def get_pricing(self, model: CatalogModel) -> dict[str, Any]:
        return pricing_public(model)

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "Integer limits, e.g. `timeout_seconds` (job time limit), `context_window` (chat).",
        }
    )
    def get_limits(self, model: CatalogModel) -> dict[str, int]:
        return dict(model.limits)
