"""Plain Django views of the API's conventions: the catch-all 404."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from rivya_api.common.errors import error_response


@csrf_exempt
def unknown_route(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Every unmatched path under the API: a 404 in the error shape, whatever the method or key."""
    return error_response(404, "unknown_route", f"No route matches {request.method} {request.path}.")
