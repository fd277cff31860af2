"""The live-updates WebSocket: session-authenticated, scoped to the account, fed after commit.

Runs the consumer as the reference project routes it (``websocket_application``:
origin check, session auth, URL router) in this process, in both topologies:
the embedded one (background work in this process's worker threads, on the
in-memory layer or on Redis) and production's (a real Celery worker process
sending through the Redis channel layer).
"""

from __future__ import annotations

import os
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction

from rivya_api.generations import services
from rivya_api.generations.live import generation_notify_on_commit
from rivya_api.generations.models import GenerationTask
from rivya_api.pages.routing import websocket_application
from rivya_billing.services import credits_grant
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_api.pages.websocket import WebsocketClient
from tests.workers import CeleryWorker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}}),
]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def channel_layer(request, settings):
    if request.param == "redis":
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 15}],
                    "prefix": f"rivya-test-{os.getpid()}",
                },
            }
        }
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "rivya_api.pages.layers.ThreadSafeInMemoryChannelLayer"}}
    return request.param


def socket(member=None, origin: str = "http://testserver") -> WebsocketClient:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if member is not None:
        headers.append((b"cookie", f"sessionid={member.client.cookies['sessionid'].value}".encode()))
    return WebsocketClient(websocket_application(), "/ws/tasks", headers=headers)


def test_anonymous_and_foreign_origin_sockets_are_refused(channel_layer, member):
    async def scenario() -> None:
        anonymous = socket()
        connected, code = await anonymous.connect()
        assert not connected
        assert code == 4401
        foreign = socket(member, origin="https://evil.example")
        connected, _ = await foreign.connect()
        assert not connected
        # The server hangs up, as uvicorn does after the close: the consumers end on their own. Left
        # running, asyncio.run's cancel-all at the end can hang in channels_redis's receive lock.
        await anonymous.disconnect()
        await foreign.disconnect()

    async_to_sync(scenario)()


def wait_until_finished(task, timeout: float = 30) -> GenerationTask:
    """Tasks run in this process's background executor (no broker here); wait for the end state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task.refresh_from_db()
        if task.is_terminal:
            return task
        time.sleep(0.05)
    raise AssertionError(f"{task.public_id} is still {task.status}")


@pytest.mark.usefixtures("in_process_executor")
def test_updates_reach_only_the_accounts_own_sockets_and_only_after_commit(channel_layer, member, stranger):
    credits_grant(account=member.account, amount=20, reference="grant")

    def rolled_back():
        try:
            with transaction.atomic():
                generation_notify_on_commit(member.account.pk, {"id": "task_rolled_back", "status": "bogus"})
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    def submit():
        return services.generation_create(account=member.account, model_id="test-image", input={"prompt": "x"})

    async def scenario() -> None:
        mine, theirs = socket(member), socket(stranger)
        assert (await mine.connect())[0]
        assert (await theirs.connect())[0]
        # Nothing is pushed for a change that was rolled back.
        await database_sync_to_async(rolled_back)()
        assert await mine.receive_nothing(timeout=0.3)
        # The task runs in the background; each committed change reaches the account's socket.
        task = await database_sync_to_async(submit)()
        statuses = []
        while not statuses or statuses[-1] not in ("succeeded", "failed"):
            message = await mine.receive_json_from(timeout=20)
            assert message["type"] == "generation.update"
            assert message["task"]["id"] == task.public_id
            statuses.append(message["task"]["status"])
        assert statuses[0] == "running"
        assert statuses[-1] == "succeeded"
        assert message["task"]["credits"] == {"reserved": 4, "charged": 4, "released": 0, "refunded": 0}
        assert message["task"]["outputs"][0]["content_type"] == "image/png"
        assert await theirs.receive_nothing(timeout=0.3)
        await mine.disconnect()
        await theirs.disconnect()

    async_to_sync(scenario)()


@pytest.mark.usefixtures("in_process_executor")
def test_sync_request_answers_with_the_accounts_tasks_only(channel_layer, member, stranger):
    tasks = []
    for who in (member, stranger):
        credits_grant(account=who.account, amount=20, reference="grant")
        task = services.generation_create(account=who.account, model_id="test-image", input={"prompt": "x"})
        tasks.append(wait_until_finished(task))
    own, foreign = tasks

    async def scenario() -> None:
        mine = socket(member)
        assert (await mine.connect())[0]
        await mine.send_json_to({"type": "tasks.sync", "ids": [own.public_id, foreign.public_id, 7]})
        message = await mine.receive_json_from(timeout=5)
        assert message["task"]["id"] == own.public_id
        assert message["task"]["status"] == "succeeded"
        assert await mine.receive_nothing(timeout=0.3)
        await mine.send_json_to({"type": "something else"})
        await mine.send_json_to(["not", "an", "object"])
        assert await mine.receive_nothing(timeout=0.3)
        await mine.disconnect()

    async_to_sync(scenario)()


@pytest.mark.redis
def test_a_celery_workers_updates_reach_the_browser_through_redis(member):
    """Production's shape: the worker is another process; only the Redis layer connects it to the socket."""
    from django.conf import settings

    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    credits_grant(account=member.account, amount=20, reference="grant")

    def submit():
        return services.generation_create(account=member.account, model_id="test-image", input={"prompt": "x"})

    async def scenario() -> None:
        mine = socket(member)
        assert (await mine.connect())[0]
        task = await database_sync_to_async(submit)()
        statuses = []
        while not statuses or statuses[-1] not in ("succeeded", "failed"):
            message = await mine.receive_json_from(timeout=60)
            assert message["task"]["id"] == task.public_id
            statuses.append(message["task"]["status"])
        assert statuses[-1] == "succeeded"
        await mine.disconnect()

    with CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
        async_to_sync(scenario)()


@pytest.mark.redis
def test_the_configured_redis_layer_survives_a_silence_longer_than_redis_pys_read_timeout(settings):
    """An idle consumer blocks in BZPOPMIN for 5 s at a time; its reads must not time out first."""
    import asyncio

    from channels.layers import channel_layers, get_channel_layer

    from config import settings as project

    async def scenario() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()

        async def send_later() -> None:
            await asyncio.sleep(6)
            await layer.send(channel, {"type": "late.message"})

        sender = asyncio.create_task(send_later())
        message = await asyncio.wait_for(layer.receive(channel), 20)
        await sender
        return message

    settings.CHANNEL_LAYERS = project.CHANNEL_LAYERS  # the reference project's, as production runs it
    channel_layers.backends.pop("default", None)
    try:
        assert async_to_sync(scenario)()["type"] == "late.message"
    finally:
        channel_layers.backends.pop("default", None)
