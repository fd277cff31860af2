"""Opaque, prefixed, random, URL-safe public IDs (``task_…``, ``file_…``, ``key_…``)."""

from __future__ import annotations

import secrets

from django.db import models

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def public_id(prefix: str, length: int = 24) -> str:
    """``prefix_`` plus ``length`` base62 characters (about 143 bits for 24)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class PublicIdField(models.CharField):
    """A unique public id, generated on first save; the primary key never leaves the database."""

    def __init__(self, *args: object, prefix: str = "", **kwargs: object) -> None:
        self.prefix = prefix
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("unique", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):  # type: ignore[no-untyped-def]
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        value = getattr(model_instance, self.attname)
        if not value:
            value = public_id(self.prefix)
            setattr(model_instance, self.attname, value)
        return value
