"""Each in-process speed-up on vs off, in interleaved rounds: per-call time, median and spread.

    DATABASE_URL=sqlite:////tmp/fastpaths.sqlite3 .venv/bin/python bench/fastpaths.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rivya_<name> REDIS_URL=redis://127.0.0.1:6379/<n> \\
        .venv/bin/python bench/fastpaths.py

Migrates the database it is given (use a scratch one) and measures, each round
running every variant once in turn (so load from other work spreads over all):

- ``key lookup``: ``keystore.key_lookup`` with the key cache off (every call reads
  the row), ``KEY_LOOKUP_COMPILED`` on vs off;
- ``credits_available``: ``AVAILABLE_SQL`` on (plain SQL) vs off (the ORM query);
- ``redis cache get``: a new cache object per call (what each request gets under
  ASGI), ``REDIS_CACHE_SHARED_POOL`` on vs off (only with ``REDIS_URL``);
- ``hold and settle`` (SQLite only): a joined reservation and a joined settle of one credit, each in
  its own transaction (as a chat turn's commit and end), ``SQLITE_HOLDS`` on vs off;
- ``middleware``: ``GET /api/v1/models`` through the async test client with the
  project's handler, ``MIDDLEWARE_ON_EVENT_LOOP`` on vs off (the rate limiter running, with a
  limit no run reaches).

The reservation has its own bench (``bench/ledger_reserve.py``, many clients).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


Variant = tuple[Callable[[], Any], Callable[[], Any]]  # (settings context, call)


def timed(variant: Variant, calls: int) -> float:
    """Microseconds per call, under the variant's settings."""
    context, call = variant
    with context():
        start = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - start) / calls * 1e6


def override(namespace: str, **values: Any) -> Any:
    from django.conf import settings
    from django.test import override_settings

    return override_settings(**{namespace: {**getattr(settings, namespace, {}), **values}})


def key_lookup_variants(secret: str) -> dict[str, Variant]:
    from rivya_api.keys import keystore
    from rivya_api.keys.tokens import secret_hash

    key_hash = secret_hash(secret)

    def variant(compiled: bool) -> Variant:
        return (
            lambda: override("RIVYA_API", KEY_LOOKUP_COMPILED=compiled, KEY_CACHE_SECONDS=0),
            lambda: keystore.key_lookup(key_hash),
        )

    return {"key lookup, compiled (on)": variant(True), "key lookup, ORM (off)": variant(False)}


def available_variants(account: Any) -> dict[str, Variant]:
    from rivya_billing.selectors import credits_available

    def variant(plain_sql: bool) -> Variant:
        return (
            lambda: override("RIVYA_BILLING", AVAILABLE_SQL=plain_sql),
            lambda: credits_available(account=account),
        )

    return {"credits_available, SQL (on)": variant(True), "credits_available, ORM (off)": variant(False)}


def cache_variants() -> dict[str, Variant]:
    from django.core.cache import caches

    caches["default"].set("bench:fastpaths", 1, 600)

    def variant(shared: bool) -> Variant:
        return (
            lambda: override("RIVYA_API", REDIS_CACHE_SHARED_POOL=shared),
            lambda: caches.create_connection("default").get("bench:fastpaths"),
        )

    return {"redis cache get, shared pool (on)": variant(True), "redis cache get, Django's (off)": variant(False)}


def holds_variants(account: Any) -> dict[str, Variant]:
    from itertools import count

    from django.db import transaction

    from rivya_billing import services
    from rivya_billing.services import holds

    services.credits_grant(account=account, amount=10**12, reference="bench:holds")
    numbers = count()

    def call() -> None:
        reference = f"bench:hold:{next(numbers)}"
        with transaction.atomic():
            holds._reserve_joined(account=account, amount=2, reference=reference, actor="key_bench")
        with transaction.atomic():
            holds._settle_joined(account=account, reference=reference, amount=1)

    def variant(on: bool) -> Variant:
        return lambda: override("RIVYA_BILLING", SQLITE_HOLDS=on), call

    return {"hold and settle, SQL built once (on)": variant(True), "hold and settle, ORM (off)": variant(False)}


def middleware_variants(secret: str) -> dict[str, Variant]:
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient, override_settings
    from django.test.client import AsyncClientHandler

    from config.middleware import EventLoopMiddlewareMixin

    class ProjectHandler(EventLoopMiddlewareMixin, AsyncClientHandler):
        pass

    def variant(on: bool) -> Variant:
        with override_settings(MIDDLEWARE_ON_EVENT_LOOP=on):
            client = AsyncClient()
            client.handler = ProjectHandler()
            client.handler.load_middleware(is_async=True)
        headers = {"Authorization": f"Bearer {secret}"}

        def call() -> Any:
            response = async_to_sync(client.get)("/api/v1/models", headers=headers)
            assert response.status_code == 200, response.status_code

        # One key sends every call: a limit no run reaches, so the limiter still runs (as in a real
        # request, and as bench/settings.py does) but never answers 429 (1200/min would, at --calls 2000).
        return lambda: override("RIVYA_API", RATE_LIMIT="100000000/min"), call

    return {
        "GET /api/v1/models, hooks on the loop (on)": variant(True),
        "GET /api/v1/models, Django's (off)": variant(False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=500, help="Calls per variant per round (middleware: a tenth).")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from rivya_api.keys.services import api_key_create
    from rivya_billing import services
    from tests.factories import account_create

    call_command("migrate", verbosity=0)
    settings.DEBUG = False
    logging.disable(logging.INFO)  # no access log line per request
    account = account_create()
    services.credits_grant(account=account, amount=100, reference="bench:grant")
    _, secret = api_key_create(account=account, name="bench")

    groups = [key_lookup_variants(secret), available_variants(account)]
    if os.environ.get("REDIS_URL"):
        groups.append(cache_variants())
    if connection.vendor == "sqlite":
        groups.append(holds_variants(account))
    groups.append(middleware_variants(secret))
    results: dict[str, list[float]] = {name: [] for group in groups for name in group}
    for group in groups:
        for variant in group.values():
            timed(variant, 3)  # warm: compiled queries, pools, imports
    for _ in range(args.rounds):
        for group in groups:
            for name, variant in group.items():
                calls = args.calls // 10 if name.startswith("GET") else args.calls
                results[name].append(timed(variant, calls))

    print(
        f"{connection.vendor}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.rounds} rounds, µs per call"
    )
    print(f"{'variant':<48} {'median':>8} {'min':>8} {'max':>8}")
    for name, values in results.items():
        print(f"{name:<48} {statistics.median(values):>8.1f} {min(values):>8.1f} {max(values):>8.1f}")


if __name__ == "__main__":
    main()
