"""Fixtures of the rivya_webhooks suites: an injectable clock and resolver, a real receiver,
a driver that runs due deliveries in this process, and a real Celery worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rivya_webhooks.models import WebhookDelivery
from rivya_webhooks.services import webhook_delivery_attempt, webhook_endpoint_create
from tests.rivya_webhooks.receiver import Receiver
from tests.rivya_webhooks.support import PUBLIC_IP, FrozenClock, StaticResolver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def resolver() -> StaticResolver:
    return StaticResolver({"hooks.example.com": [PUBLIC_IP], "receiver.test": ["127.0.0.1"]})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def local_targets(settings: Any, rivya_settings: Any) -> None:
    """Deliveries may go to the local receiver: private networks allowed, http allowed (DEBUG)."""
    settings.DEBUG = True
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=True)


@pytest.fixture
def make_endpoint(account: Any) -> Callable[..., Any]:
    def make(url: str, event_types: list[str] | None = None, **kwargs: Any) -> tuple[Any, str]:
        return webhook_endpoint_create(
            account=kwargs.pop("account", account), url=url, event_types=event_types or ["*"], **kwargs
        )

    return make


def run_due(clock: Callable[[], datetime], *, resolver: Any = None, rng: Any = None) -> int:
    """What the sweeper and a worker do together, in this process, at ``clock()``: send every
    due delivery once. Returns how many attempts were made."""
    made = 0
    due = WebhookDelivery.objects.filter(
        state=WebhookDelivery.State.PENDING, next_attempt_at__lte=clock(), endpoint__enabled=True
    ).order_by("pk")
    for delivery_id in list(due.values_list("pk", flat=True)):
        if webhook_delivery_attempt(delivery_id=delivery_id, clock=clock, resolver=resolver, rng=rng):
            made += 1
    return made


@pytest.fixture
def redis_queue() -> Iterator[Any]:
    """This run's Redis (REDIS_URL), with Celery's default queue emptied before and after."""
    import redis

    from config.celery import app

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    app.control.purge()
    yield client
    app.control.purge()
