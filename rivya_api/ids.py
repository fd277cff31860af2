"""The API's public-id model field (``task_…``, ``file_…``, ``key_…``); ids come from ``rivya_core.ids``.

``public_id`` is re-exported: migrations and callers import it from here.
"""

from __future__ import annotations

from django.db import models

from rivya_core.ids import public_id

__all__ = ["PublicIdField", "public_id"]


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
