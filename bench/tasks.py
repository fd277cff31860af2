"""The raw Celery baseline: a task that only records when it ran (bench settings only)."""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.conf import settings

DONE_KEY = "rivya-bench:noop-done"
_client: redis.Redis | None = None


@shared_task(name="bench.noop", ignore_result=True)
def noop_task() -> None:
    # One RPUSH of the completion time: the bench reads first and last to get the rate.
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL)
    _client.rpush(DONE_KEY, time.time())
