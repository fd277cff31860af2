"""The reference project's URLs plus two bare DRF endpoints: ``GET /bench/hello``, the throughput
baseline, and ``GET /bench/floor``, the hello plus the round trips ``GET /api/v1/credits`` cannot do
without; and ``POST /bench/turn-floor``, the least a streamed chat turn does
(``bench/turn_floor.py``)."""

from django.core.cache import caches
from django.db import connection
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.turn_floor import turn_floor
from config.urls import urlpatterns as project_urlpatterns
from rivya_api.conf import api_settings
from rivya_api.keys import onetrip
from rivya_api.keys.throttling import increment


class HelloView(APIView):
    """DRF with nothing of ours: no authentication, no throttle, no database."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request):
        return Response({"hello": "world"})


def key_reads_and_count(reads: list[str], counter: str, ttl: int) -> None:
    """The key check's cache reads and the rate limit's count: one round trip where the gateway makes
    them one (``rivya_api.keys.onetrip``, ``RATE_LIMIT_IN_AUTH_TRIP``), else two (MGET, then INCR + EXPIRE)."""
    redis = onetrip.cache()
    if redis is None:
        caches[api_settings.KEY_CACHE_ALIAS].get_many(reads)
        increment(counter, ttl)
        return
    name = redis.make_and_validate_key(counter)
    pipe = redis._cache.get_client(name, write=True).pipeline()
    pipe.mget([redis.make_and_validate_key(read) for read in reads]).incr(name).expire(name, ttl)
    pipe.execute()


class FloorView(HelloView):
    """The hello plus the I/O of an authenticated, rate-limited read of the balance, and none of its work.

    One cache MGET (the key's entry and the address's failed-lookup counter) and the rate limit's
    one-round-trip increment (one round trip for both where the gateway folds them, as it does by
    default: ``key_reads_and_count``), one SELECT of a wallet by its index: the least ``/api/v1/credits`` can
    do while keys are checked through the shared cache, the limit is shared between processes and
    the balance is read from the database. Its throughput over the hello's bounds the credits row.
    """

    def get(self, request):
        key_reads_and_count(["bench:floor:counter", "bench:floor:entry"], "bench:floor:ratelimit", 61)
        with connection.cursor() as cursor:
            cursor.execute("SELECT balance - held FROM rivya_billing_wallet ORDER BY id LIMIT 1")
            row = cursor.fetchone()
        return Response({"available": row[0] if row else 0})


urlpatterns = [
    path("bench/hello", HelloView.as_view(), name="bench-hello"),
    path("bench/floor", FloorView.as_view(), name="bench-floor"),
    path("bench/turn-floor", turn_floor, name="bench-turn-floor"),  # bench/turn_floor.py
    *project_urlpatterns,
]
