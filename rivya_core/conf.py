"""What every Rivya app reads from Django's settings: its namespace and the account model.

``AppSettings`` is the small settings object each app builds its own namespace
on (``RIVYA_API``, ``RIVYA_BILLING``, ``RIVYA_WEBHOOKS``): defaults, dotted-path
imports, mandatory and deprecated keys, lazy reads and a reload on
``setting_changed``. ``RIVYA_ACCOUNT_MODEL`` (default: the user model) names the
model every account foreign key points at; ``account_model_label`` reads it and
``get_account_model`` returns the class.
"""

from __future__ import annotations

import warnings
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.utils.module_loading import import_string


class AppSettings:
    """Lazy, cached view of one ``settings.<namespace>`` dict."""

    def __init__(
        self,
        namespace: str,
        defaults: dict[str, Any],
        import_strings: tuple[str, ...] = (),
        mandatory: tuple[str, ...] = (),
        deprecated: dict[str, str] | None = None,
    ) -> None:
        self.namespace = namespace
        self.defaults = defaults
        self.import_strings = import_strings
        self.mandatory = mandatory
        self.deprecated = deprecated or {}
        self._cache: dict[str, Any] = {}
        setting_changed.connect(self._on_setting_changed, weak=False)

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, self.namespace, None) or {}

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.defaults})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.defaults:
            raise AttributeError(f"Invalid {self.namespace} setting: {name!r}")
        if name in self._cache:
            return self._cache[name]
        user = self.user_settings
        if name in self.deprecated and name in user:
            warnings.warn(
                f"{self.namespace}[{name!r}] is deprecated: {self.deprecated[name]}",
                DeprecationWarning,
                stacklevel=2,
            )
        value = user.get(name, self.defaults[name])
        if name in self.mandatory and value in (None, ""):
            raise ImproperlyConfigured(f"{self.namespace}[{name!r}] is required.")
        if name in self.import_strings:
            value = self._import(name, value)
        self._cache[name] = value
        return value

    def _import(self, name: str, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [self._import(name, item) for item in value]
        if not isinstance(value, str):
            return value
        try:
            return import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"Could not import {value!r} for {self.namespace}[{name!r}]: {exc}") from exc

    def reload(self) -> None:
        self._cache.clear()

    def _on_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in (self.namespace, "RIVYA_ACCOUNT_MODEL"):
            self.reload()


def account_model_label() -> str:
    """The ``app_label.Model`` every Rivya app's account foreign keys point at (``RIVYA_ACCOUNT_MODEL``)."""
    return getattr(settings, "RIVYA_ACCOUNT_MODEL", None) or settings.AUTH_USER_MODEL


def get_account_model() -> type[models.Model]:
    """The account model class; usable while the app registry loads models (as ``get_user_model``)."""
    return apps.get_model(account_model_label(), require_ready=False)
