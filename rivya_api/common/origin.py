"""The absolute origin of URLs the API hands out (download links, webhook payloads).

``RIVYA_API["PUBLIC_BASE_URL"]`` (env ``RIVYA_PUBLIC_BASE_URL``) wins when set,
so URLs are the same in API responses and in payloads built outside a request.
Otherwise the request's own scheme and host are used. With neither (a worker
building a webhook payload in the embedded default) the embedded server's
address is used, and a warning says to set the variable.
"""

from __future__ import annotations

import logging
from typing import Any

from rivya_api.conf import api_settings

logger = logging.getLogger("rivya_api")

EMBEDDED_ORIGIN = "http://127.0.0.1:8000"
_warned = False


def public_origin(request: Any = None) -> str:
    """``scheme://host[:port]`` with no trailing slash."""
    global _warned
    configured = (api_settings.PUBLIC_BASE_URL or "").strip().rstrip("/")
    if configured:
        return configured
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    if not _warned:
        _warned = True
        logger.warning("RIVYA_PUBLIC_BASE_URL is not set; absolute URLs use %s", EMBEDDED_ORIGIN)
    return EMBEDDED_ORIGIN


def absolute_url(path: str, request: Any = None) -> str:
    """``path`` (starting with ``/``) on the public origin."""
    return public_origin(request) + path
