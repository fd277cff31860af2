"""Fixtures of the rivya_webhooks suites: an injectable clock and resolver, a real receiver,
a driver that runs due deliveries in this process, and a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

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


# --- A real Celery worker ----------------------------------------------------------------


def _database_url() -> str:
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


class CeleryWorker:
    """``celery -A config worker`` as a subprocess on this run's Redis and test database."""

    def __init__(self, *, concurrency: int = 2, extra_env: dict[str, str] | None = None) -> None:
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "var" / f"test-celery-worker-{os.getpid()}.log"

    def start(self) -> CeleryWorker:
        from config.celery import app

        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": os.environ["REDIS_URL"],
            "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
            "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **self.extra_env,
        }
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--loglevel=INFO", f"--concurrency={self.concurrency}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            f"--hostname=rivya-test-{os.getpid()}@%h",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-3000:]}")
            if app.control.ping(timeout=0.5, destination=[f"rivya-test-{os.getpid()}@{os.uname().nodename}"]):
                return self
        self.stop()
        raise RuntimeError(f"celery worker did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def redis_queue() -> Iterator[Any]:
    """This run's Redis (REDIS_URL), with Celery's default queue emptied before and after."""
    import redis

    from config.celery import app

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    app.control.purge()
    yield client
    app.control.purge()
