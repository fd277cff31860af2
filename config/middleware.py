"""WhiteNoise and Django's own middleware for an async middleware chain.

WhiteNoise's middleware is sync-only. Under ASGI, one sync-only middleware in
the chain makes Django wrap the rest of the chain back into async (and the
whole into sync): every request, static or not, then pays two extra thread
hand-offs. This subclass serves the same files and simply passes other
requests on in whichever mode the chain runs.

``ASGIHandler`` (the project's ASGI entry point) loads, in place of Django's
own middleware named in ``MIDDLEWARE``, the subclasses at the end of this
module, which run their hooks on the event loop (see ``_OnEventLoop``).
``MIDDLEWARE`` keeps Django's names, so ``check --deploy`` still sees them.
``MIDDLEWARE_ON_EVENT_LOOP = False`` (environment: the same name) loads Django's own
classes instead; ``tests/test_middleware.py`` runs the same requests both ways.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core.handlers import asgi
from django.middleware import clickjacking, common, csrf, security
from whitenoise.middleware import WhiteNoiseMiddleware

from config import request_started
from config.request_threads import ReusedRequestThreadsMixin
from rivya_api.common.csp import CSPMiddleware as _HtmlOnlyCSPMiddleware
from rivya_api.common.resolve_once import ResolveOnceHandlerMixin
from rivya_api.common.streaming import serve_streaming


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: Any) -> Any:
        if self.autorefresh:  # development: looks on disk, so off the event loop
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            response = self.serve(static_file, request)
            # A file body through an async iterator: Django neither warns nor reads it whole first.
            return serve_streaming(request, response) if response.streaming else response
        return await self.get_response(request)


# --- Django's own middleware, on the event loop ---------------------------------------------


class _OnEventLoop:
    """For a Django ``MiddlewareMixin`` class: in an async chain, run its hooks on the event loop.

    ``MiddlewareMixin`` runs every hook of every middleware through
    ``sync_to_async``: about 13 thread hand-offs per request for the stack in
    ``settings.MIDDLEWARE``, some 0.25 ms each on a small machine, before the
    view runs and again before the first byte of its response. The hooks of
    the classes below compute headers and cookies in memory; the ones that can
    reach the database or disk (a session that was used, messages that were
    read or added, a CSRF check that parses a form body) still run in a
    thread, as the ``*_needs_thread`` methods say. In a sync chain nothing changes.
    """

    async_mode: bool

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        process_view = getattr(self, "process_view", None)
        if self.async_mode and process_view is not None:
            # Django adapts process_view by what it is: a coroutine function is awaited in place.
            async def on_loop(request: Any, view: Any, args: Any, kwargs: Any) -> Any:
                if self.view_needs_thread(request, view):
                    return await sync_to_async(process_view, thread_sensitive=True)(request, view, args, kwargs)
                return process_view(request, view, args, kwargs)

            self.process_view = on_loop

    def request_needs_thread(self, request: Any) -> bool:
        return False

    def view_needs_thread(self, request: Any, view: Any) -> bool:
        return False

    def response_needs_thread(self, request: Any, response: Any) -> bool:
        return False

    async def __acall__(self, request: Any) -> Any:
        response = None
        process_request = getattr(self, "process_request", None)
        if process_request is not None:
            if self.request_needs_thread(request):
                response = await sync_to_async(process_request, thread_sensitive=True)(request)
            else:
                response = process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        process_response = getattr(self, "process_response", None)
        if process_response is not None:
            if self.response_needs_thread(request, response):
                response = await sync_to_async(process_response, thread_sensitive=True)(request, response)
            else:
                response = process_response(request, response)
        return response


class SecurityMiddleware(_OnEventLoop, security.SecurityMiddleware):
    pass


class SessionMiddleware(_OnEventLoop, sessions.SessionMiddleware):
    def response_needs_thread(self, request: Any, response: Any) -> bool:
        # An untouched session is neither loaded nor saved (is_empty() reads no storage).
        session = getattr(request, "session", None)
        return session is None or session.accessed or session.modified or settings.SESSION_SAVE_EVERY_REQUEST


class CommonMiddleware(_OnEventLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_OnEventLoop, csrf.CsrfViewMiddleware):
    def request_needs_thread(self, request: Any) -> bool:
        return settings.CSRF_USE_SESSIONS

    def view_needs_thread(self, request: Any, view: Any) -> bool:
        # Only an unsafe request to a protected view is checked, which may parse a form body.
        safe = getattr(view, "csrf_exempt", False) or request.method in ("GET", "HEAD", "OPTIONS", "TRACE")
        return settings.CSRF_USE_SESSIONS or not safe

    def response_needs_thread(self, request: Any, response: Any) -> bool:
        return settings.CSRF_USE_SESSIONS


class AuthenticationMiddleware(_OnEventLoop, auth.AuthenticationMiddleware):
    pass  # request.user is lazy: loaded when a view uses it, in the view's own thread


class MessageMiddleware(_OnEventLoop, messages.MessageMiddleware):
    def response_needs_thread(self, request: Any, response: Any) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(_OnEventLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class CSPMiddleware(_OnEventLoop, _HtmlOnlyCSPMiddleware):
    pass  # builds a header in memory


ON_EVENT_LOOP = {
    "django.middleware.security.SecurityMiddleware": "config.middleware.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware": "config.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware": "config.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware": "config.middleware.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "config.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware": "config.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "config.middleware.XFrameOptionsMiddleware",
    "rivya_api.common.csp.CSPMiddleware": "config.middleware.CSPMiddleware",
}


class EventLoopMiddlewareMixin:
    """For a Django handler: load the ``ON_EVENT_LOOP`` variants of the middleware ``MIDDLEWARE`` names."""

    def load_middleware(self, is_async: bool = False) -> None:
        if not getattr(settings, "MIDDLEWARE_ON_EVENT_LOOP", True):  # a host without the setting: on
            super().load_middleware(is_async)  # type: ignore[misc]
            return
        named = settings.MIDDLEWARE
        # Django reads the list once, here, at start-up (no request is being served yet).
        settings.MIDDLEWARE = [ON_EVENT_LOOP.get(path, path) for path in named]
        try:
            super().load_middleware(is_async)  # type: ignore[misc]
        finally:
            settings.MIDDLEWARE = named


class ASGIHandler(ReusedRequestThreadsMixin, EventLoopMiddlewareMixin, ResolveOnceHandlerMixin, asgi.ASGIHandler):
    """Django's ASGI handler, with Django's middleware running its hooks on the event loop,
    each request's sync code in a reused thread (``config.request_threads``) and the URL
    resolved once per request (``rivya_api.common.resolve_once``); ``request_started``'s database
    receivers are queued to the request's thread rather than awaited (``config.request_started``)."""

    def __init__(self) -> None:
        super().__init__()
        request_started.install()
