"""The documentation pages: public, server-rendered, on the shared base layout."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from rivya_api.catalog.selectors import catalog_models
from rivya_api.catalog.spec import KINDS
from rivya_api.common.origin import public_origin
from rivya_api.common.rendering import render
from rivya_api.conf import api_settings
from rivya_api.guides.reference import model_entry
from rivya_webhooks.registry import event_types

PAGES = [
    ("quickstart", "First integration path"),
    ("authentication", "API Authentication"),
    ("credits", "API Credits"),
    ("models", "Model API Reference"),
    ("sdk", "TypeScript SDK"),
    ("webhooks", "Webhooks"),
]


def _context(request: HttpRequest, page: str, **extra: Any) -> dict[str, Any]:
    origin = public_origin(request)
    return {"page": page, "pages": PAGES, "origin": origin, "api_base": f"{origin}/api/v1", **extra}


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "rivya_api/docs/index.html", _context(request, "index"))


def _example_models() -> dict[str, Any]:
    """The first listed image and chat models, for the examples (None when there is none)."""
    models = catalog_models()
    return {
        "image_model": next((m for m in models if m.kind == "image"), None),
        "chat_model": next((m for m in models if m.kind == "chat"), None),
    }


def quickstart(request: HttpRequest) -> HttpResponse:
    return render(request, "rivya_api/docs/quickstart.html", _context(request, "quickstart", **_example_models()))


def sdk(request: HttpRequest) -> HttpResponse:
    return render(request, "rivya_api/docs/sdk.html", _context(request, "sdk", **_example_models()))


def webhooks(request: HttpRequest) -> HttpResponse:
    return render(request, "rivya_api/docs/webhooks.html", _context(request, "webhooks", event_types=event_types()))


def authentication(request: HttpRequest) -> HttpResponse:
    retention_hours = api_settings.IDEMPOTENCY_RETENTION_SECONDS // 3600
    context = _context(request, "authentication", idempotency_retention_hours=retention_hours)
    return render(request, "rivya_api/docs/authentication.html", context)


def credits(request: HttpRequest) -> HttpResponse:
    return render(request, "rivya_api/docs/credits.html", _context(request, "credits"))


def models(request: HttpRequest) -> HttpResponse:
    entries = [model_entry(model) for model in catalog_models()]
    groups = [(kind, [e for e in entries if e["model"].kind == kind]) for kind in KINDS]
    return render(
        request,
        "rivya_api/docs/models.html",
        _context(request, "models", entries=entries, groups=[g for g in groups if g[1]]),
    )
