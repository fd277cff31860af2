"""Serializers of the keys resource: the ``api_key`` object and the provisioning inputs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rivya_api.common.fields import ChoiceField
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import StrictSerializer
from rivya_api.keys.scopes import SCOPES

WINDOWS = ("total", "day", "month")
KEY_STATUSES = ("active", "rolling", "expired", "revoked")


class CreditLimitInputSerializer(StrictSerializer):
    credits = serializers.IntegerField(
        min_value=0, max_value=2**53, help_text="The most the key may reserve per window."
    )
    window = ChoiceField(
        choices=WINDOWS,
        required=False,
        default="total",
        help_text="`total` (never resets), `day` or `month` (calendar, UTC).",
    )


class APIKeyCreateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, allow_blank=True, required=False, default="")
    scopes = serializers.ListField(
        child=ChoiceField(choices=SCOPES),
        required=False,
        max_length=len(SCOPES),
        help_text="What the key may do. Default: every scope except `keys:read` and `keys:write`. "
        "Never more than the calling key has.",
    )
    models = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        allow_null=True,
        max_length=100,
        help_text="The model ids the key may use; null or absent: every model. Never more than the calling key may.",
    )
    credit_limit = CreditLimitInputSerializer(
        required=False, allow_null=True, help_text="A cap on the credits the key may reserve per window; null: none."
    )


class APIKeyUpdateInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, allow_blank=True, required=False)
    models = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        allow_null=True,
        max_length=100,
        help_text="Replaces the allow-list; null: every model (only if the calling key may use every model).",
    )
    credit_limit = CreditLimitInputSerializer(
        required=False, allow_null=True, help_text="Sets or changes the limit; null removes it."
    )


class CreditLimitOutputSerializer(serializers.Serializer):
    credits = serializers.IntegerField(help_text="The most the key may reserve per window.")
    window = serializers.ChoiceField(choices=WINDOWS, help_text="`total`, `day` or `month` (UTC).")
    used = serializers.IntegerField(
        help_text="Reserved in the current window: held credits count while held, charged ones stay counted."
    )
    resets_at = serializers.DateTimeField(allow_null=True, help_text="When the window ends; null for `total`.")


class APIKeyOutputSerializer(serializers.Serializer):
    """The ``api_key`` object. Needs ``context["limits"]``: ``{spend_limit_id: (credits, window, used, resets_at)}``."""

    id = serializers.CharField(source="public_id", help_text="`key_…`")
    object = constant_field("api_key")
    name = serializers.CharField()
    prefix = serializers.CharField(source="masked", help_text="What is shown of the secret: `rvya_sk_AbCd…wxyz`.")
    status = serializers.ChoiceField(choices=KEY_STATUSES, help_text="`rolling`: replaced, works until `expires_at`.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES))
    models = serializers.ListField(
        source="allowed_models", child=serializers.CharField(), allow_null=True, help_text="null: every model."
    )
    credit_limit = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Approximate (updated at most once a minute).")

    @extend_schema_field(CreditLimitOutputSerializer(allow_null=True))
    def get_credit_limit(self, obj: Any) -> dict[str, Any] | None:
        if obj.spend_limit_id is None:
            return None
        limit = self.context["limits"].get(obj.spend_limit_id)
        return None if limit is None else CreditLimitOutputSerializer(limit).data


class APIKeyWithSecretOutputSerializer(APIKeyOutputSerializer):
    secret = serializers.SerializerMethodField(help_text="`rvya_sk_…`: shown only in this response; store it now.")

    def get_secret(self, obj: Any) -> str:
        return self.context["secret"]
