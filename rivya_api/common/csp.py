"""django-csp's middleware, for HTML only.

A Content-Security-Policy means something to a browser rendering a page; on
the API's JSON it is bytes on every response for nothing. Name this class in
``MIDDLEWARE`` in place of ``csp.middleware.CSPMiddleware`` (the reference
project's ASGI handler swaps it in for you, see ``config.middleware``).
"""

from __future__ import annotations

from typing import Any

from csp.middleware import CSPMiddleware as _CSPMiddleware


class CSPMiddleware(_CSPMiddleware):
    def process_response(self, request: Any, response: Any) -> Any:
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)
