"""Live updates from a worker process: through its long-lived loop, as through ``async_to_sync``."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from rivya_api.generations import live


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


@pytest.mark.parametrize("loop_on", [True, False], ids=["worker loop", "async_to_sync"])
def test_updates_arrive_the_same_either_way(worker_process, rivya_settings, loop_on):
    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=loop_on)
    got = _received(3)
    assert [message["task"]["id"] for message in got] == ["task_0", "task_1", "task_2"]
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
