"""The URL resolved once per request, not three times: a fast path through Django's handler.

Three places ask which route a request's path names: ``BodyLimitMiddleware`` (ASGI, the body
limit of the route), the gate (``RequestGateMiddleware``: is it the API?) and Django's handler
(``BaseHandler.resolve_request``, the view to call). Each walked the whole URL tree. Here the
first walk's ``ResolverMatch`` is remembered for the request, keyed by the path it was made for,
the resolver that made it and the active language (a translated route or a language prefix matches
by it, and ``LocaleMiddleware`` activates the request's language between the askers), and the later
ones take it when all three are the same. Not keyed: a custom pattern or converter that reads other
per-request state (none here). A path that matches nothing is not remembered
(every later asker resolves it again and gets Django's own ``Resolver404``, with its
``tried`` list for the debug page), nor is a request whose middleware set ``request.urlconf``.

Where it is kept: under ASGI in the request's scope (the one dict the body limit, the gate and
Django's ``ASGIRequest`` share; a plain tuple under ``SCOPE_KEY``), under WSGI on the request, where
only the gate asks (Django's stock WSGI handler resolves again, as before). What it reaches into: Django's
``BaseHandler.resolve_request`` (overridden by ``config.middleware.ASGIHandler`` through
``ResolveOnceHandlerMixin``), which is not public. ``RIVYA_API["RESOLVE_ONCE"] = False``
resolves at every asker as before; ``tests/rivya_api/test_resolve_once.py`` compares the two.
"""

from __future__ import annotations

from typing import Any

from django.urls import ResolverMatch, get_resolver, get_urlconf
from django.utils.translation import get_language

from rivya_api.conf import api_settings

SCOPE_KEY = "rivya.resolver_match"  # (path, resolver, match, language)


def _holder(request: Any) -> dict[str, Any]:
    scope = getattr(request, "scope", None)
    return scope if isinstance(scope, dict) else request.__dict__


def resolve(path: str, holder: dict[str, Any] | None = None) -> ResolverMatch:
    """``django.urls.resolve(path)`` (raises ``Resolver404``), remembered in ``holder`` for the request
    (an ASGI scope before Django has made a request of it, else see ``resolve_request_path``)."""
    resolver = get_resolver(get_urlconf())
    if holder is None or not api_settings.RESOLVE_ONCE:
        return resolver.resolve(path)
    remembered = holder.get(SCOPE_KEY)
    language = get_language()
    if remembered is not None and remembered[0] == path and remembered[1] is resolver and remembered[3] == language:
        return remembered[2]
    match = resolver.resolve(path)
    holder[SCOPE_KEY] = (path, resolver, match, language)
    return match


def resolve_request_path(request: Any) -> ResolverMatch:
    """``resolve(request.path_info)``, remembered for the rest of the request."""
    return resolve(request.path_info, _holder(request))


def remembered_match(request: Any) -> ResolverMatch | None:
    """The match an earlier asker made for this request's path with the resolver Django's handler
    would use now, or None (then the handler resolves as Django does)."""
    if not api_settings.RESOLVE_ONCE or hasattr(request, "urlconf"):
        return None
    remembered = _holder(request).get(SCOPE_KEY)
    if remembered is None or remembered[0] != request.path_info or remembered[1] is not get_resolver():
        return None
    if remembered[3] != get_language():
        return None  # LocaleMiddleware changed the language since: translated routes may match otherwise
    return remembered[2]


class ResolveOnceHandlerMixin:
    """For a Django handler: take the request's remembered match instead of resolving its path again."""

    def resolve_request(self, request: Any) -> ResolverMatch:
        match = remembered_match(request)
        if match is None:
            return super().resolve_request(request)  # type: ignore[misc]
        request.resolver_match = match
        return match
