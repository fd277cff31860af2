"""Live updates from a worker process: through its long-lived loop, as through ``async_to_sync``."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from rivya_api.generations import live, live_queue


@pytest.fixture
def worker_process(monkeypatch):
    monkeypatch.setattr(live, "_worker_loop_pid", None)
    live.worker_loop_enable()
    return live


def _received(updates: int) -> list[dict]:
    """Join an account's group, send ``updates`` live updates, and return what the group member got."""
    layer = get_channel_layer()
    group = live.account_group(4242)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    try:
        for number in range(updates):
            live._send(4242, {"id": f"task_{number}", "status": "running"})

        async def collect() -> list[dict]:
            return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(updates)]

        return async_to_sync(collect)()
    finally:
        async_to_sync(layer.group_discard)(group, channel)


@pytest.mark.parametrize(
    ("loop_on", "queued"), [(True, True), (True, False), (False, False)], ids=["queued", "worker loop", "async_to_sync"]
)
def test_updates_arrive_the_same_either_way(worker_process, rivya_settings, loop_on, queued):
    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=loop_on, LIVE_UPDATES_QUEUED=queued)
    got = _received(20)
    assert [message["task"]["id"] for message in got] == [f"task_{number}" for number in range(20)]
    assert {message["type"] for message in got} == {"generation.update"}
    loops = [thread for thread in threading.enumerate() if thread.name == "rivya-live-updates"]
    assert bool(loops) or not loop_on


def test_the_loop_is_one_per_process_and_kept(worker_process):
    _received(2)
    first = live._WorkerLoop._get()
    _received(1)
    assert live._WorkerLoop._get() is first
    assert first.is_running()


def test_outside_a_worker_process_nothing_changes(monkeypatch):
    monkeypatch.setattr(live, "_worker_loop_pid", None)
    sent = []
    monkeypatch.setattr(live._WorkerLoop, "run", classmethod(lambda cls, coroutine: sent.append(coroutine)))
    assert [message["task"]["id"] for message in _received(1)] == ["task_0"]
    assert sent == []


def test_a_send_that_times_out_is_cancelled_on_the_loop(worker_process, monkeypatch):
    monkeypatch.setattr(live, "SEND_TIMEOUT", 0.05)
    cancelled = threading.Event()

    async def stalled() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        live._WorkerLoop.run(stalled())
    assert cancelled.wait(5)


class SlowLayer:
    """A channel layer whose group sends take a while (Redis far away) and are recorded in order."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.sent = seconds, []

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.sleep(self.seconds)
        self.sent.append(message["task"]["id"])


def test_queued_updates_do_not_hold_the_job_and_are_all_sent_in_order(worker_process, rivya_settings, monkeypatch):
    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=True, LIVE_UPDATES_QUEUED=True)
    layer = SlowLayer(0.05)
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    started = time.monotonic()
    for number in range(10):
        live._send(1, {"id": f"task_{number}"})
    assert time.monotonic() - started < 0.25  # ten sends of 50 ms each did not wait
    assert live_queue.drain()
    assert layer.sent == [f"task_{number}" for number in range(10)]


def test_unqueued_updates_wait_for_each_send(worker_process, rivya_settings, monkeypatch):
    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=True, LIVE_UPDATES_QUEUED=False)
    layer = SlowLayer(0.05)
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    started = time.monotonic()
    for number in range(4):
        live._send(1, {"id": f"task_{number}"})
    assert time.monotonic() - started >= 0.2
    assert layer.sent == [f"task_{number}" for number in range(4)]


def test_a_backlog_makes_the_sender_wait(worker_process, rivya_settings, monkeypatch):
    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=True, LIVE_UPDATES_QUEUED=True)
    monkeypatch.setattr(live_queue, "MAX_PENDING", 2)
    layer = SlowLayer(0.05)
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda: layer)
    started = time.monotonic()
    for number in range(4):
        live._send(1, {"id": f"task_{number}"})
    assert time.monotonic() - started >= 0.1  # past two pending, each send waited for the queue
    assert live_queue.drain()
    assert layer.sent == [f"task_{number}" for number in range(4)]
