"""``AsyncApiView``: the API's view base whose handlers may be ``async def``.

DRF's ``APIView.dispatch`` is synchronous. A view built on this base is an
async Django view, so a handler may hold a request open (a chat stream, a
``Prefer: wait`` long-poll) without holding a thread or a database connection.
Every request still goes through DRF's one request cycle, once:

- a **sync** handler (and DRF's own ``options`` / 405): ``APIView.dispatch``
  itself runs, whole, in the request's thread (``sync_to_async``,
  thread-sensitive, as Django runs any sync view);
- an **async** handler: one worker-thread call (``db_call``, which gives the
  database connection back) runs ``initial`` (authentication, permissions and
  scopes, throttles, the ``Idempotency-Key`` claim) and then the view's sync
  ``prepare`` hook, so the handler's first database work rides the same hop;
  the handler then runs on the event loop, and its response is finalized
  (rate-limit headers) there. An error, or a response that settles an
  idempotency claim, is rendered in one more worker call (the exception handler
  may write: ``key_limit_refused``).

Routes use ``as_view()`` as for any DRF view, so drf-spectacular documents the
handlers themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest
from django.template.response import SimpleTemplateResponse
from rest_framework.views import APIView

from rivya_api.common.db import db_call
from rivya_api.common.views import AccountScopedMixin


class AsyncDispatch:
    """The async ``dispatch`` (see the module docstring); put it before the DRF view class in the bases."""

    view_is_async = True  # Django marks the route's callback as a coroutine function

    @classmethod
    def as_view(cls, *args: Any, **kwargs: Any) -> Any:
        # ViewSetMixin.as_view builds a plain function around dispatch: mark it as a coroutine
        # function (Django's View.as_view already does) so Django awaits it.
        return markcoroutinefunction(super().as_view(*args, **kwargs))  # type: ignore[misc]

    def prepare(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """Sync work for an async handler, run in the same worker call as the checks; its result
        is the handler's ``prepared`` argument. Errors raised here are rendered as any other."""
        return None

    def handler_for(self, request: HttpRequest) -> Callable[..., Any]:
        method = (request.method or "").lower()
        if method not in self.http_method_names:  # type: ignore[attr-defined]
            return self.http_method_not_allowed  # type: ignore[attr-defined]
        return getattr(self, method, self.http_method_not_allowed)

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        handler = self.handler_for(request)
        if not iscoroutinefunction(handler):
            return await sync_to_async(super().dispatch)(request, *args, **kwargs)  # type: ignore[misc]
        drf_request, prepared, refused = await db_call(self._checked, request, args, kwargs)
        if refused is not None:
            return refused
        try:
            response = await handler(drf_request, prepared, *args, **kwargs)
        except Exception as exc:
            return await db_call(self._rendered_error, drf_request, exc, args, kwargs)
        if self._idempotency_claim is not None:  # type: ignore[attr-defined]
            return await db_call(self.finalize_response, drf_request, response, *args, **kwargs)  # type: ignore[attr-defined]
        return self.finalize_response(drf_request, response, *args, **kwargs)  # type: ignore[attr-defined]

    def _checked(self, request: HttpRequest, args: tuple, kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(drf_request, prepared, None)`` once the checks pass, else ``(drf_request, None, error response)``."""
        view: Any = self
        view.args, view.kwargs = args, kwargs
        drf_request = view.initialize_request(request, *args, **kwargs)
        view.request = drf_request
        view.headers = view.default_response_headers
        try:
            view.initial(drf_request, *args, **kwargs)
            return drf_request, self.prepare(drf_request, *args, **kwargs), None
        except Exception as exc:
            return drf_request, None, self._rendered_error(drf_request, exc, args, kwargs)

    def _rendered_error(self, drf_request: Any, exc: Exception, args: tuple, kwargs: dict[str, Any]) -> Any:
        view: Any = self
        response = view.finalize_response(drf_request, view.handle_exception(exc), *args, **kwargs)
        if isinstance(response, SimpleTemplateResponse):  # not a stored replay (a plain HttpResponse)
            response.render()
        return response


class AsyncApiView(AsyncDispatch, AccountScopedMixin, APIView):
    """An authenticated API view whose handlers may be async (``async def get(self, request, prepared, …)``)."""
