"""The reference project's own pages: the site root and its icon."""

from __future__ import annotations

from functools import cache

from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_safe


@require_safe
def home(request: HttpRequest) -> HttpResponseRedirect:
    """``/``: a signed-in user's settings (keys, credits, Studio), everyone else's documentation."""
    if request.user.is_authenticated:
        return HttpResponseRedirect(reverse("rivya_pages:keys"))
    return HttpResponseRedirect(reverse("rivya_docs:index"))


@cache
def _favicon() -> bytes | None:
    path = finders.find("rivya_api/favicon.ico")
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, where browsers look for it unless a page names another: Rivya's icon.

    Rivya's own layout links the static file; this answers the browsers and tools that
    ask the root without reading a page (the reference project has no icon of its own).
    """
    icon = _favicon()
    if icon is None:
        raise Http404("No favicon.ico in the static files.")
    response = HttpResponse(icon, content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
