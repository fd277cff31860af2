"""Settings for rivya_billing, read from the ``RIVYA_BILLING`` dict.

``AppSettings`` is the small settings object every Rivya app uses: defaults,
dotted-path imports, mandatory and deprecated keys, lazy reads and a reload
on ``setting_changed``. It lives here because billing is the app with no Rivya
dependencies; the other apps import the class, never billing's settings.
"""

from __future__ import annotations

import warnings
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
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
    """The ``app_label.Model`` every Rivya app's account foreign keys point at."""
    return getattr(settings, "RIVYA_ACCOUNT_MODEL", None) or settings.AUTH_USER_MODEL


DEFAULTS: dict[str, Any] = {
    # The name of the wallet's unit, shown next to every amount (amounts are integers of it).
    "UNIT": "credits",
    # Lease a new hold gets at reservation: long enough to cover the time the work may wait in
    # a queue, since a busy worker is not a dead one. Running work renews it.
    "HOLD_LEASE_SECONDS": 60 * 60,
    # Lease a renewal extends to, counted from the renewal (``credits_hold_renew``).
    "HOLD_RENEW_SECONDS": 10 * 60,
    # Usage reported above a hold at settle time:
    #   "cap"       - charge the hold only; the difference is booked as a zero-effect ``waive`` line.
    #   "available" - also charge the difference from the available balance (an ``overrun`` line),
    #                 up to what is available; whatever is still uncovered is booked as ``waive``.
    "OVERRUN_POLICY": "cap",
    # On PostgreSQL, a transaction that writes a wallet commits asynchronously and is flushed
    # before the service returns, so the wallet's row lock is not held through the WAL flush
    # (services.durability). False: every wallet write commits synchronously under the lock.
    "EARLY_LOCK_RELEASE": True,
    # Most lapsed holds one sweep expires (the sweeper runs again on its beat interval).
    "EXPIRE_BATCH_SIZE": 500,
    # Window of the "recent activity" totals shown next to a wallet's balance.
    "ACTIVITY_WINDOW_DAYS": 30,
}

billing_settings = AppSettings("RIVYA_BILLING", DEFAULTS)
