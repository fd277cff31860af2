"""Serializer fields of the API's inputs that say how to fix a bad value."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class ChoiceField(serializers.ChoiceField):
    """DRF's ``ChoiceField`` whose ``invalid_choice`` message lists the valid values.

    ``"spend" is not a valid choice.`` leaves the client guessing; the valid
    values are few and public (they are in the OpenAPI document's enum), so the
    message names them.
    """

    default_error_messages = {"invalid_choice": '"{input}" is not a valid choice; use one of: {choices}.'}

    def fail(self, key: str, **kwargs: Any) -> None:
        if key == "invalid_choice":
            kwargs.setdefault("choices", ", ".join(str(value) for value in self.choices))
        super().fail(key, **kwargs)
