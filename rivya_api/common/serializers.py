"""Input serializers that take a body as it was sent: no unknown field, no value of another JSON type.

DRF's fields are lenient: an ``IntegerField`` takes ``"5"``, a ``BooleanField``
takes ``"true"`` and ``1``, a ``CharField`` takes ``5``, and unknown fields
are silently dropped. ``StrictSerializer`` refuses both, the same way for a
JSON POST, a PATCH and a multipart form (where every value is text by nature,
so only unknown fields are refused). A number the field calls an integer may be
sent as ``24.0`` (JSON has one number type) and is then run as ``24``.

``MetadataField`` is the one shape of ``metadata`` everywhere it is accepted:
string keys and values with bounded counts and lengths, so what a client stores
can never outgrow the webhook payloads and pages built from it.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from rivya_api.common import hostile

# Which JSON types each kind of DRF field accepts, checked in order (subclasses first).
_JSON_TYPES: list[tuple[type, tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int, float), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (int, float), "a number"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.CharField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string (ISO 8601)"),
    (serializers.ListField, (list,), "an array"),
    (serializers.ListSerializer, (list,), "an array"),
    (serializers.DictField, (dict,), "an object"),
    (serializers.Serializer, (dict,), "an object"),
]


def _expected(field: serializers.Field) -> tuple[tuple[type, ...], str] | None:
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            return types, name
    return None  # JSONField, custom fields: they check their own input


def json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why ``value`` (as parsed from JSON) is of the wrong type for ``field``, or None."""
    if value is None:
        return None  # allow_null is the field's own business
    expected = _expected(field)
    if expected is None:
        return None
    types, name = expected
    if isinstance(value, bool) and bool not in types:
        return f"Expected {name}, got a boolean."
    if not isinstance(value, types):
        return f"Expected {name}, got {_json_type_name(value)}."
    if isinstance(field, serializers.IntegerField) and isinstance(value, float) and not value.is_integer():
        return "Expected an integer, got a number with a fraction."
    child = getattr(field, "child", None)
    if isinstance(field, (serializers.ListField, serializers.DictField)) and child is not None:
        items = value if isinstance(value, list) else list(value.values())
        for item in items:
            problem = json_type_error(child, item)
            if problem:
                return problem
    return None


def _json_type_name(value: Any) -> str:
    return {str: "a string", int: "a number", float: "a number", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__
    )


class StrictSerializer(serializers.Serializer):
    """Unknown fields, and values of another JSON type than the field's, are refused with a 400 naming them."""

    def unknown_field_message(self, name: str, data: Any) -> str:
        """What to tell a client that sent ``name``: by default, which fields there are."""
        return f"Unknown field {hostile.quote(name, 64)}; the fields are {_listing(list(self.fields))}."

    def unknown_field_error(self, name: str, data: Any) -> serializers.ValidationError:
        message = self.unknown_field_message(name, data)
        return serializers.ValidationError({hostile.label(name): [message]}, code="unknown_parameter")

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(name for name in data.keys() if name not in self.fields)
            if unknown:
                raise self.unknown_field_error(unknown[0], data)
        if isinstance(data, dict) and not isinstance(data, QueryDict):  # JSON, not a form: types are real
            for name, field in self.fields.items():
                if name in data and not field.read_only:
                    problem = json_type_error(field, data[name])
                    if problem:
                        raise serializers.ValidationError(
                            {name: [serializers.ErrorDetail(problem, code="invalid_type")]}
                        )
        return super().to_internal_value(data)


def _listing(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


class MetadataField(serializers.DictField):
    """``{string: string}`` with at most ``max_keys`` keys of ``max_key_length`` and values of ``max_value_length``.

    Stripe's limits (50 keys, 40, 500) are the anchor; resources may be tighter.
    """

    def __init__(self, *, max_keys: int = 50, max_key_length: int = 40, max_value_length: int = 500, **kwargs: Any):
        self.max_keys, self.max_key_length, self.max_value_length = max_keys, max_key_length, max_value_length
        kwargs.setdefault("child", serializers.CharField(max_length=max_value_length, allow_blank=True))
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        if len(value) > self.max_keys:
            raise serializers.ValidationError(f"metadata takes at most {self.max_keys} keys.")
        for key in value:
            if not key or len(key) > self.max_key_length:
                raise serializers.ValidationError(
                    f"metadata keys are 1 to {self.max_key_length} characters; {hostile.quote(key, 60)} is not."
                )
        return value
