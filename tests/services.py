"""Which outside services this test run has, and what to do when one is missing.

Tests marked ``postgres``, ``redis``, ``browser`` or ``node`` skip with a one-line
reason when the service is absent, unless ``RIVYA_TEST_REQUIRE_SERVICES=1`` (CI),
which turns the skip into a failure so that in CI every test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
from django.conf import settings


def services_required() -> bool:
    return os.environ.get("RIVYA_TEST_REQUIRE_SERVICES") == "1"


def has_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


@cache
def has_redis() -> bool:
    url = os.environ.get("REDIS_URL")
    if not url:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@cache
def has_browser() -> bool:
    if not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
        return False
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def has_node() -> bool:
    node = shutil.which("node")
    if not node:
        return False
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    return version.startswith("v") and int(version[1:].split(".")[0]) >= 20


WHEELHOUSE = Path(__file__).resolve().parent.parent / "var" / "wheelhouse"


def has_wheelhouse() -> bool:
    return (WHEELHOUSE / ".complete").exists()


CHECKS = {
    "postgres": (has_postgres, "needs PostgreSQL: set DATABASE_URL=postgres://…"),
    "redis": (has_redis, "needs Redis: set REDIS_URL=redis://… to a running server"),
    "browser": (has_browser, "needs Chromium at /usr/bin/chromium and the playwright package"),
    "node": (has_node, "needs Node.js 20+ on PATH"),
    "wheelhouse": (has_wheelhouse, "needs the dependencies' wheels in var/wheelhouse: run `make test` (or its target)"),
}


def require_services(item: pytest.Item) -> None:
    for name, (available, reason) in CHECKS.items():
        if item.get_closest_marker(name) and not available():
            if services_required():
                pytest.fail(f"RIVYA_TEST_REQUIRE_SERVICES=1 but this test {reason}", pytrace=False)
            pytest.skip(reason)
