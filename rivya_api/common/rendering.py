"""``render`` for the apps' HTML pages: Django's, plus the layout the pages extend.

The section templates (``rivya_api/pages/_base.html``, ``rivya_api/docs/_base.html``)
start with ``{% extends rivya_base_template %}``; ``RIVYA_API["BASE_TEMPLATE"]``
names it (default ``rivya_api/base.html``, whose blocks the integration guide
lists), so a host renders every page inside its own layout with one setting.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render as django_render

from rivya_api.conf import api_settings


def page_context(context: dict[str, Any] | None = None) -> dict[str, Any]:
    """``context`` plus ``rivya_base_template`` (the view's own keys win)."""
    return {"rivya_base_template": api_settings.BASE_TEMPLATE, **(context or {})}


def render(
    request: HttpRequest, template_name: str, context: dict[str, Any] | None = None, **kwargs: Any
) -> HttpResponse:
    """``django.shortcuts.render`` with ``page_context``."""
    return django_render(request, template_name, page_context(context), **kwargs)
