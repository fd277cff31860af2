"""Live updates from a worker process: through its long-lived loop, as through ``async_to_sync``;
queued there without waiting (``LIVE_WORKER_NO_WAIT``), as waited for."""

from __future__ import annotations

import asyncio
import threading
import time

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


PATHS = {"worker loop, no wait": (True, True), "worker loop, waited": (True, False), "async_to_sync": (False, False)}


@pytest.mark.parametrize(("loop_on", "no_wait"), PATHS.values(), ids=PATHS.keys())
def test_updates_arrive_the_same_either_way(worker_process, rivya_settings, loop_on, no_wait):
    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=loop_on, LIVE_WORKER_NO_WAIT=no_wait)
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


class _Layer:
    """A channel layer that records its sends; ``slow`` of them take a while, ``failing`` raise."""

    def __init__(self, *, slow: set[int] = frozenset(), failing: set[int] = frozenset(), delay: float = 0.05) -> None:
        self.sent: list[int] = []
        self.slow, self.failing, self.delay = slow, failing, delay
        self.sending = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        self.sending.set()
        number = message["number"] if "number" in message else message["task"].get("number", 0)
        if number in self.slow:
            await asyncio.sleep(self.delay)
        if number in self.failing:
            raise ConnectionError("redis gone")
        self.sent.append(number)


def test_queued_sends_keep_their_order_and_a_failed_one_does_not_stop_the_rest(worker_process, caplog):
    layer = _Layer(slow={0, 3}, failing={2})
    started = time.monotonic()
    for number in range(6):
        live._WorkerLoop.post(layer, "rivya.account.1", {"number": number})
    assert time.monotonic() - started < 0.05  # not waited for: the first alone takes 0.05 s
    assert live._WorkerLoop.flush(5)
    assert layer.sent == [0, 1, 3, 4, 5]
    assert "Could not push a live update to rivya.account.1" in caplog.text


def test_a_stalled_send_times_out_and_the_next_goes(worker_process, monkeypatch):
    monkeypatch.setattr(live, "SEND_TIMEOUT", 0.05)
    layer = _Layer()
    stalled = _Layer(slow={0}, delay=30)
    live._WorkerLoop.post(stalled, "g", {"number": 0})
    live._WorkerLoop.post(layer, "g", {"number": 1})
    assert live._WorkerLoop.flush(5)
    assert (stalled.sent, layer.sent) == ([], [1])


def test_a_worker_process_flushes_its_queue_at_shutdown(worker_process):
    layer = _Layer(slow={0, 1, 2})
    for number in range(3):
        live._WorkerLoop.post(layer, "g", {"number": number})
    live.worker_loop_flush()
    assert layer.sent == [0, 1, 2]


def test_sends_piling_up_drop_the_oldest(worker_process, monkeypatch, caplog):
    monkeypatch.setattr(live, "QUEUE_LIMIT", 2)
    layer = _Layer(slow={0}, delay=0.2)
    live._WorkerLoop.post(layer, "g", {"number": 0})
    assert layer.sending.wait(5)  # 0 is being sent
    for number in range(1, 5):
        live._WorkerLoop.post(layer, "g", {"number": number})
    assert live._WorkerLoop.flush(5)
    assert layer.sent == [0, 3, 4]  # 0 was being sent; 1 and 2 dropped for 3 and 4
    assert "Live updates pile up" in caplog.text


def test_the_generation_updated_signal_is_still_sent_before_returning(worker_process, monkeypatch):
    from rivya_api.signals import generation_updated

    got = []

    def receiver(sender, **kwargs):  # type: ignore[no-untyped-def]
        got.append(kwargs["task"]["id"])

    generation_updated.connect(receiver)
    monkeypatch.setattr(live._WorkerLoop, "post", classmethod(lambda cls, *args: None))
    try:
        live._notify(7, {"id": "task_x"})
    finally:
        generation_updated.disconnect(receiver)
    assert got == ["task_x"]


def _task(number: int, task: str, status: str) -> dict:
    return {"number": number, "task": {"id": task, "status": status}}


def test_piling_up_drops_a_superseded_update_of_the_same_task_before_the_oldest(worker_process, monkeypatch, caplog):
    monkeypatch.setattr(live, "QUEUE_LIMIT", 3)
    monkeypatch.setattr(live._WorkerLoop, "dropped", 0)
    layer = _Layer(slow={0}, delay=0.2)
    live._WorkerLoop.post(layer, "g", _task(0, "t0", "running"))
    assert layer.sending.wait(5)  # 0 is being sent
    live._WorkerLoop.post(layer, "g", _task(1, "a", "succeeded"))  # oldest waiting, the only word on "a"
    live._WorkerLoop.post(layer, "g", _task(2, "b", "running"))  # superseded by 4
    live._WorkerLoop.post(layer, "g", _task(3, "c", "running"))
    live._WorkerLoop.post(layer, "g", _task(4, "b", "succeeded"))
    assert live._WorkerLoop.flush(5)
    assert layer.sent == [0, 1, 3, 4]  # "a" succeeded still arrives; b's "running" was dropped
    assert live._WorkerLoop.dropped == 1
    assert "1 dropped so far" in caplog.text


def test_a_job_does_not_wait_for_its_live_update(worker_process, rivya_settings, monkeypatch):
    import channels.layers

    rivya_settings("RIVYA_API", LIVE_WORKER_LOOP=True, LIVE_WORKER_NO_WAIT=True)
    layer = _Layer(slow={0}, delay=0.5)
    monkeypatch.setattr(channels.layers, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(live, "account_group", lambda account_id: "g")
    started = time.monotonic()
    live._send(1, {"id": "t", "status": "running"})
    assert time.monotonic() - started < 0.25
    assert live._WorkerLoop.flush(5)


def test_the_worker_process_shutdown_signal_flushes(worker_process):
    import os

    from celery.signals import worker_process_shutdown

    import rivya_api.generations.tasks  # noqa: F401  (connects the receivers)

    layer = _Layer(slow={0, 1}, delay=0.1)
    for number in range(2):
        live._WorkerLoop.post(layer, "g", {"number": number})
    worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert layer.sent == [0, 1]
