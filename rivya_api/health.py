"""Liveness and readiness probes (no authentication, nothing secret in the body)."""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.set("rivya:readyz", "1", 5)
    if cache.get("rivya:readyz") != "1":
        raise RuntimeError("cache did not return what was written")


def _broker() -> None:
    from celery import current_app

    if current_app.conf.get("rivya_in_process"):
        return  # the in-process executor is part of this process, so it is up
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


CHECKS = {"database": _database, "cache": _cache, "broker": _broker}


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("Readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = "unavailable"
    down = [name for name, state in results.items() if state != "ok"]
    body = {"status": "unavailable" if down else "ok", "checks": results}
    if down:
        body["unavailable"] = down
    return JsonResponse(body, status=503 if down else 200)
