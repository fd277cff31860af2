"""Serializers of the Chat API: the OpenAI request shape in, completions and sessions out.

Input follows OpenAI's Chat Completions request. A field we do not implement
that would change the result (``tools``, ``response_format``, ``n`` > 1 …) is a
400 ``unsupported_parameter`` naming it; nothing is silently ignored. Images
are content parts whose ``image_url.url`` is a Files API id (``file_…``);
any other image source (a web URL, an inline ``data:`` URL) is refused.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rivya_api.chat.models import ChatMessage
from rivya_api.chat.services import NewMessage
from rivya_api.common import serializers as common_serializers
from rivya_api.common.fields import ChoiceField
from rivya_api.common.reused_fields import ReusedFieldsMixin
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import MetadataField

ROLES = ("system", "developer", "user", "assistant")
IMAGE_DETAILS = ("auto", "low", "high")

TEXT_PART_SCHEMA = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
}
IMAGE_PART_SCHEMA = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"type": "string", "enum": ["image_url"]},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {
                    "type": "string",
                    "pattern": "^file_",
                    "description": "A Files API id (`file_…`, purpose `chat_attachment`). Other sources are refused.",
                },
                "detail": {"type": "string", "enum": list(IMAGE_DETAILS)},
            },
        },
    },
}


@extend_schema_field({"type": "null", "description": "Always null: log probabilities are not available."})
class NullField(serializers.Field):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> None:
        return None


def _unsupported(name: str, why: str = "") -> serializers.ValidationError:
    return serializers.ValidationError(
        {name: [serializers.ErrorDetail(f"{name} is not supported{why}.", code="unsupported_parameter")]}
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "items": {"oneOf": [TEXT_PART_SCHEMA, IMAGE_PART_SCHEMA]}},
        ]
    }
)
class MessageContentField(serializers.Field):
    """A string, or a list of ``text`` and ``image_url`` (Files API id) parts -> (text, images)."""

    default_error_messages = {
        "invalid": "content must be a string or a list of content parts.",
        "empty": "content must not be an empty list.",
    }

    def to_internal_value(self, data: Any) -> tuple[str, list[dict[str, str]]]:
        if isinstance(data, str):
            return data, []
        if not isinstance(data, list):
            self.fail("invalid")
        if not data:
            self.fail("empty")
        texts: list[str] = []
        images: list[dict[str, str]] = []
        for index, part in enumerate(data):
            errors = self._part_error(part)
            if errors is not None:
                raise serializers.ValidationError([{} for _ in range(index)] + [errors])
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                image = {"file_id": part["image_url"]["url"]}
                if part["image_url"].get("detail"):
                    image["detail"] = part["image_url"]["detail"]
                images.append(image)
        return "\n".join(texts), images

    @staticmethod
    def _part_error(part: Any) -> dict[str, Any] | None:
        def error(name: str, message: str, code: str = "invalid_parameter") -> dict[str, Any]:
            return {name: [serializers.ErrorDetail(message, code=code)]}

        if not isinstance(part, dict):
            return {"type": [serializers.ErrorDetail("A content part must be an object.", code="invalid_parameter")]}
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                return error("text", "A text part needs a string text.")
            extra = sorted(set(part) - {"type", "text"})
            return error(extra[0], f"{extra[0]} is not supported.", "unsupported_parameter") if extra else None
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                return error("image_url", "An image_url part needs image_url.url.")
            url = image["url"]
            if not url.startswith("file_"):
                return {
                    "image_url": {
                        "url": [
                            serializers.ErrorDetail(
                                "Images are attached by Files API id: upload the image with POST /api/v1/files "
                                "(purpose chat_attachment) and send its id (file_…) as image_url.url. "
                                "Web and data: URLs are not accepted.",
                                code="invalid_image_source",
                            )
                        ]
                    }
                }
            if image.get("detail") is not None and image["detail"] not in IMAGE_DETAILS:
                return {"image_url": error("detail", f"detail must be one of {', '.join(IMAGE_DETAILS)}.")}
            extra = sorted(set(image) - {"url", "detail"})
            if extra:
                return {"image_url": error(extra[0], f"{extra[0]} is not supported.", "unsupported_parameter")}
            return None
        return error(
            "type",
            f"Content parts of type {kind!r} are not supported (text and image_url are).",
            "unsupported_parameter",
        )


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]})
class StopField(serializers.Field):
    def to_internal_value(self, data: Any) -> list[str]:
        if isinstance(data, str):
            return [data] if data else []
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(item, str) and item for item in data):
            return list(data)
        raise serializers.ValidationError("stop must be a string or a list of up to 4 non-empty strings.")


class StrictSerializer(common_serializers.StrictSerializer):
    """Unknown fields, and values of another JSON type than the field's, are refused with a 400 naming them."""

    unsupported_reasons: dict[str, str] = {}

    def unknown_field_error(self, name: str, data: Any) -> serializers.ValidationError:
        return _unsupported(name, self.unsupported_reasons.get(name, ""))


class ChatMessageInputSerializer(StrictSerializer):
    role = ChoiceField(choices=ROLES)
    content = MessageContentField()

    unsupported_reasons = {
        "name": "",
        "tool_calls": " (tools are not supported)",
        "tool_call_id": " (tools are not supported)",
        "function_call": " (functions are not supported)",
    }

    def validate(self, attrs: dict[str, Any]) -> NewMessage:
        text, images = attrs["content"]
        if images and attrs["role"] != "user":
            raise serializers.ValidationError(
                {"content": [serializers.ErrorDetail("Only user messages can carry images.", code="invalid_parameter")]}
            )
        return NewMessage(role=attrs["role"], text=text, images=images)


class StreamOptionsSerializer(StrictSerializer):
    include_usage = serializers.BooleanField(
        required=False,
        help_text="Accepted for compatibility: the usage chunk (with `choices: []` and `credits`) is always sent.",
    )


# Validated on every turn: its fields are copied once per thread (rivya_api.common.reused_fields).
class ChatCompletionInputSerializer(ReusedFieldsMixin, StrictSerializer):
    """``POST /chat/completions``: the OpenAI request shape plus ``session_id``."""

    model = serializers.CharField(help_text="A chat model's id from GET /api/v1/models.")
    messages = ChatMessageInputSerializer(
        many=True,
        allow_empty=False,
        help_text="The new messages of this turn. With `session_id`, the stored history comes first.",
    )
    session_id = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Rivya extension: continue this session (`chat_…`). Without it a new session is created.",
    )
    stream = serializers.BooleanField(required=False, default=False, allow_null=True)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, min_value=1, allow_null=True)
    max_completion_tokens = serializers.IntegerField(required=False, min_value=1, allow_null=True)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2, allow_null=True)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1, allow_null=True)
    stop = StopField(required=False, allow_null=True)
    seed = serializers.IntegerField(required=False, allow_null=True)
    presence_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2, allow_null=True)
    frequency_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2, allow_null=True)
    n = serializers.IntegerField(required=False, allow_null=True, help_text="Only 1 is supported.")
    user = serializers.CharField(required=False, allow_blank=True, max_length=256)
    metadata = MetadataField(
        max_keys=16,
        max_key_length=64,
        max_value_length=512,  # OpenAI's limits for this parameter
        required=False,
        allow_null=True,
        help_text="Up to 16 string pairs (keys up to 64 characters, values up to 512), stored with the turn.",
    )

    unsupported_reasons = {
        "tools": " (tool calling is not available)",
        "tool_choice": " (tool calling is not available)",
        "parallel_tool_calls": " (tool calling is not available)",
        "functions": " (function calling is not available)",
        "function_call": " (function calling is not available)",
        "response_format": " (only plain text replies are available)",
        "logprobs": "",
        "top_logprobs": "",
        "logit_bias": "",
        "audio": " (only text replies are available)",
        "modalities": " (only text replies are available)",
        "prediction": "",
        "reasoning_effort": "",
        "service_tier": "",
        "store": " (every turn is stored in its session)",
        "web_search_options": "",
    }

    def validate_n(self, value: int | None) -> int | None:
        if value not in (None, 1):
            raise serializers.ValidationError("Only n = 1 is supported.", code="unsupported_parameter")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        max_tokens, max_completion = attrs.get("max_tokens"), attrs.get("max_completion_tokens")
        if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
            raise serializers.ValidationError(
                {"max_completion_tokens": ["Send max_completion_tokens or max_tokens, not two different values."]}
            )
        attrs["max_output_tokens"] = max_completion if max_completion is not None else max_tokens
        return attrs


# --- Output shapes (documentation of the JSON the views build) -----------------------


class ChatUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    credits = serializers.IntegerField(help_text="Credits charged for this turn (Rivya extension).")


class ChatCompletionMessageSerializer(serializers.Serializer):
    role = constant_field("assistant")
    content = serializers.CharField(allow_null=True)
    refusal = serializers.CharField(allow_null=True)


class ChatCompletionChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatCompletionMessageSerializer()
    logprobs = NullField()
    finish_reason = serializers.ChoiceField(choices=["stop", "length", "content_filter"])


class ChatCompletionSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The turn's id: the assistant message's id (`msg_…`).")
    object = constant_field("chat.completion")
    created = serializers.IntegerField(help_text="Unix seconds.")
    model = serializers.CharField()
    choices = ChatCompletionChoiceSerializer(many=True)
    usage = ChatUsageSerializer()
    system_fingerprint = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(help_text="The session this turn belongs to (Rivya extension).")


class ChatSessionOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    object = constant_field("chat.session")
    title = serializers.CharField()
    model = serializers.CharField()
    message_count = serializers.IntegerField()
    credits_spent = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ChatAttachmentOutputSerializer(serializers.Serializer):
    type = constant_field("image")
    file_id = serializers.CharField()


class ChatMessageUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    credits = serializers.IntegerField()


class ChatMessageOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    object = constant_field("chat.message")
    role = serializers.ChoiceField(choices=ROLES)
    content = serializers.CharField()
    attachments = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=ChatMessage.Status.values)
    finish_reason = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    credits_reserved = serializers.SerializerMethodField()
    error_code = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(ChatAttachmentOutputSerializer(many=True))
    def get_attachments(self, obj: ChatMessage) -> list[dict[str, str]]:
        return [{"type": "image", "file_id": file_id} for file_id in obj.attachments]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_finish_reason(self, obj: ChatMessage) -> str | None:
        return obj.finish_reason or None

    @extend_schema_field(ChatMessageUsageSerializer(allow_null=True))
    def get_usage(self, obj: ChatMessage) -> dict[str, int] | None:
        if obj.role != ChatMessage.Role.ASSISTANT or obj.status == ChatMessage.Status.IN_PROGRESS:
            return None
        prompt, completion = obj.prompt_tokens or 0, obj.completion_tokens or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "credits": obj.credits_charged or 0,
        }

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_credits_reserved(self, obj: ChatMessage) -> int | None:
        return obj.credits_reserved

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error_code(self, obj: ChatMessage) -> str | None:
        return obj.error_code or None


class ChatSessionDetailOutputSerializer(ChatSessionOutputSerializer):
    messages = ChatMessageOutputSerializer(many=True, source="ordered_messages")
