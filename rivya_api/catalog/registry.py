"""The loaded catalog: ``RIVYA_API["MODELS"]`` parsed once per process and cached.

The cache is dropped when ``RIVYA_API`` changes (``setting_changed``, i.e.
``override_settings`` and the test fixtures) or by ``catalog_reload()``.
Loading imports each provider class once; a class that cannot be imported is
logged once per load and its model is not listed. Whether an upstream's
variables are set is read on every call, so a model appears as soon as its
environment is complete.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import setting_changed

from rivya_api.catalog.exceptions import CatalogConfigError
from rivya_api.catalog.spec import CatalogIssue, CatalogModel, import_provider, parse_entries, resolve_entry
from rivya_api.conf import api_settings

logger = logging.getLogger("rivya_api.catalog")


@dataclass
class LoadedCatalog:
    """Every valid model in setting order, and why the others cannot run here."""

    models: dict[str, CatalogModel] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def inspect_catalog(raw: Any) -> tuple[LoadedCatalog, list[CatalogIssue]]:
    """Parse and resolve a catalog setting without caching or raising (used by the system check)."""
    entries, issues = parse_entries(raw)
    catalog = LoadedCatalog()
    for entry in entries:
        model_id = entry.values["id"]
        try:
            provider_class = import_provider(entry.values["provider"])
        except ImportError as exc:
            catalog.unavailable[model_id] = f"provider {entry.values['provider']!r} cannot be imported: {exc}"
            continue
        model, model_issues = resolve_entry(entry, provider_class)
        issues.extend(model_issues)
        if model is not None:
            catalog.models[model.id] = model
    return catalog, issues


_lock = threading.Lock()
_loaded: LoadedCatalog | None = None


def _load() -> LoadedCatalog:
    catalog, issues = inspect_catalog(api_settings.MODELS)
    if issues:
        raise CatalogConfigError(issues)
    for model_id, reason in catalog.unavailable.items():
        logger.warning("Model %s is not listed: %s", model_id, reason)
    return catalog


def loaded_catalog() -> LoadedCatalog:
    """The cached catalog; raises ``CatalogConfigError`` when the setting is invalid."""
    global _loaded
    catalog = _loaded
    if catalog is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
            catalog = _loaded
    return catalog


def catalog_reload() -> None:
    """Forget the cached catalog; the next call parses the setting again."""
    global _loaded
    with _lock:
        _loaded = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "RIVYA_API":
        catalog_reload()


setting_changed.connect(_on_setting_changed, weak=False, dispatch_uid="rivya_api.catalog.reload")


def is_listed(model: CatalogModel) -> bool:
    """Whether the model can run here: its upstream (if any) is configured and the provider agrees."""
    if model.upstream is not None and not model.upstream.configured():
        return False
    is_configured = getattr(model.provider_class, "is_configured", None)
    if is_configured is not None:
        try:
            return bool(is_configured(model.provider_options()))
        except Exception:
            logger.exception("Model %s: the provider's is_configured() failed; not listed", model.id)
            return False
    return True
