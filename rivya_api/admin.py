"""Django admin of rivya_api, one import line per resource sub-package."""

from rivya_api.idempotency import admin as _idempotency_admin  # noqa: F401
