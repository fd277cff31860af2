"""A Celery worker SIGKILLed while its tasks run: each ends retried-and-succeeded or failed-and-released.

Four slow tasks run at once (progress > 0) on a worker with four children;
the worker and its children are SIGKILLed together, as a machine that loses
power would, and a new worker is started. The sweeper notices the lapsed
heartbeats: the model that may run twice is queued again and succeeds on its
second attempt (charged once); the one that must not is failed with
``worker_lost`` and its credits released. Nothing stays held, nothing is charged
twice, each task sends exactly one terminal event.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import report, wait_until
from tests.faults.traffic import Books, Tenants, new_key
from tests.rivya_webhooks.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(400)]

RUN_SECONDS = 8


def test_sigkill_worker_mid_task_each_task_retried_or_released_never_charged_twice(make_stack):
    stack = make_stack(worker_concurrency=4)
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        tenant = tenants.add("worker-kill", credits=1_000, keys=1, endpoints=[["*"]])
        with stack.client(tenant.secrets[0]) as client:
            tasks = {}
            for model in ("rivya-slow-1", "rivya-slow-1", "rivya-slow-once-1", "rivya-slow-once-1"):
                key = new_key()
                response = client.post(
                    "/api/v1/generations",
                    headers={"Idempotency-Key": key},
                    json={"model": model, "input": {"prompt": "a slow kite", "width": 64, "height": 64,
                                                    "seconds": RUN_SECONDS}, "metadata": {"key": key}},
                )  # fmt: skip
                assert response.status_code == 202, response.text
                tasks[response.json()["id"]] = response.json()

            def all_running_with_progress() -> bool:
                states = [client.get(f"/api/v1/generations/{task_id}").json() for task_id in tasks]
                return all(s["status"] == "running" and s["progress"] > 0 for s in states)

            wait_until(all_running_with_progress, timeout=60, what="all four tasks running with progress")
            killed_at = time.monotonic()
            stack.processes["worker"].kill()
            rows = stack.sql("SELECT status FROM rivya_api_generationtask")
            assert {row[0] for row in rows} == {"running"}, rows
            stack.start_process("worker", timeout=60)

            finished_after: dict[str, float] = {}

            def all_terminal() -> bool:
                for task_id in tasks:
                    if task_id not in finished_after:
                        state = client.get(f"/api/v1/generations/{task_id}").json()
                        if state["status"] in ("succeeded", "failed", "canceled"):
                            finished_after[task_id] = round(time.monotonic() - killed_at, 1)
                return len(finished_after) == len(tasks)

            wait_until(all_terminal, timeout=120, interval=0.5, what="every task to end after the kill")
            final = {task_id: client.get(f"/api/v1/generations/{task_id}").json() for task_id in tasks}

        books = Books(stack, tenants, receiver)
        books.drain()
        attempts = dict(stack.sql("SELECT public_id, attempts FROM rivya_api_generationtask"))
        figures = {
            "tasks": {
                task_id: {
                    "model": state["model"],
                    "status": state["status"],
                    "attempts": attempts[task_id],
                    "error": (state["error"] or {}).get("code"),
                    "credits": state["credits"],
                    "ended_after_kill_s": finished_after[task_id],
                }
                for task_id, state in final.items()
            },
            "money": books.check_money(),
            "webhooks": books.check_webhooks(allow_duplicates=True),
        }
        report("worker SIGKILL", figures)

        for task_id, state in final.items():
            price = state["credits"]["reserved"]
            if state["model"] == "rivya-slow-1":
                assert state["status"] == "succeeded", state
                assert attempts[task_id] == 2
                assert state["credits"] == {"reserved": price, "charged": price, "released": 0, "refunded": 0}
            else:
                assert state["status"] == "failed", state
                assert state["error"]["code"] == "worker_lost"
                assert state["credits"] == {"reserved": price, "charged": 0, "released": price, "refunded": price}
        books.terminal_events_per_task()
        books.check_tasks([])
