"""A web process killed in the middle of an idempotent POST: the retry neither runs twice nor charges twice.

The worst moment to die is after the work committed (the task exists, its
credits are held) and before the response was stored under the
Idempotency-Key. The first test stops a request exactly there: a trigger in the
stack's own database makes the UPDATE that stores the outcome wait on a lock
the test holds; the test finds the web process whose connection is waiting,
SIGKILLs it, and cuts its database session (so the UPDATE never happens, as if
the process had died a moment before sending it). The client retries with the
same key, as the SDKs do. The second test kills web processes at random under
a steady stream of submissions. Both check, from the database, that each key
made one task, reserved once and was charged at most once.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time

import httpx
import psycopg
import pytest

from tests.faults.harness import pid_with_local_port, wait_until
from tests.faults.traffic import IN_FLIGHT, Books, Load, Tenants, media_models, new_key
from tests.rivya_webhooks.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(400)]

LOCK = 1414


def trap(key: str) -> str:
    """A trigger that makes storing ``key``'s outcome wait for advisory lock LOCK (held by the test)."""
    assert re.fullmatch(r"faults-[0-9a-f]+", key)
    return f"""
CREATE FUNCTION faults_hold_outcome() RETURNS trigger AS $$
BEGIN
    IF NEW.state = 'completed' AND NEW.key = '{key}' THEN
        PERFORM pg_advisory_xact_lock({LOCK});
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER faults_hold_outcome BEFORE UPDATE ON rivya_api_idempotencyrecord
    FOR EACH ROW EXECUTE FUNCTION faults_hold_outcome();
"""


UNTRAP = "DROP TRIGGER faults_hold_outcome ON rivya_api_idempotencyrecord; DROP FUNCTION faults_hold_outcome();"


def test_killed_after_the_work_committed_and_before_the_outcome_was_stored(stack):
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        tenant = tenants.add("web-kill", credits=1_000, keys=1, endpoints=[["*"]])
        key = new_key()
        headers = {"Authorization": f"Bearer {tenant.secrets[0]}", "Idempotency-Key": key}
        body = {"model": "rivya-image-1", "input": {"prompt": "a kite", "width": 64, "height": 64},
                "metadata": {"key": key}}  # fmt: skip
        stack.sql(trap(key))
        first: dict = {}
        with psycopg.connect(stack.database_url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [LOCK])

            def first_attempt() -> None:
                try:
                    first["response"] = httpx.post(
                        stack.base_url + "/api/v1/generations", json=body, headers=headers, timeout=60
                    )
                except httpx.HTTPError as exc:
                    first["error"] = exc

            thread = threading.Thread(target=first_attempt)
            thread.start()
            waiting = wait_until(
                lambda: stack.sql(
                    "SELECT pid, client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND query ILIKE 'UPDATE%%idempotencyrecord%%'"
                ),
                timeout=30,
                what="the request to block while storing its outcome",
            )
            (backend, client_port), *_ = waiting
            # The work is committed: the task exists with its price held (or, if the worker
            # was quick, already captured).
            tasks = stack.sql("SELECT public_id FROM rivya_api_generationtask WHERE metadata->>'key' = %s", [key])
            (task_id,) = tasks[0]
            hold = stack.sql("SELECT state FROM rivya_billing_hold WHERE reference = %s", [task_id])
            assert hold in ([("pending",)], [("settled",)]), hold
            workers = stack.web_worker_pids()
            victim = pid_with_local_port(client_port, workers)
            assert victim is not None, (client_port, workers)
            os.kill(victim, signal.SIGKILL)
            holder.execute("SELECT pg_terminate_backend(%s)", [backend])
            thread.join(30)
        stack.sql(UNTRAP)
        assert "error" in first, f"the killed process answered: {first}"
        record = stack.sql("SELECT state, reference FROM rivya_api_idempotencyrecord WHERE key = %s", [key])
        assert record[0][0] == "in_flight", record
        wait_until(lambda: len(stack.web_worker_pids()) == 2 and victim not in stack.web_worker_pids(),
                   timeout=30, what="the process manager to replace the killed web process")  # fmt: skip

        # The SDK's retries: 409 while the dead attempt's lease runs, then the answer.
        answers = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            retry = httpx.post(stack.base_url + "/api/v1/generations", json=body, headers=headers, timeout=30)
            answers.append(retry.status_code)
            if not (retry.status_code == 409 and retry.json()["error"]["code"] == IN_FLIGHT):
                break
            time.sleep(float(retry.headers.get("Retry-After", "1")))
        print(f"\nweb kill mid-POST: retries answered {answers}")  # noqa: T201
        assert retry.status_code == 202, retry.text
        assert retry.json()["id"] == task_id, "the retry ran the request again"
        again = httpx.post(stack.base_url + "/api/v1/generations", json=body, headers=headers, timeout=30)
        assert again.json()["id"] == task_id
        assert again.headers["Idempotent-Replayed"] == "true"

        books = Books(stack, tenants, receiver)
        books.drain()
        tasks = stack.sql("SELECT public_id, status, charged FROM rivya_api_generationtask")
        assert [t[0] for t in tasks] == [task_id], tasks
        assert stack.sql(
            "SELECT type, count(*) FROM rivya_billing_ledgerentry WHERE reference = %s GROUP BY type ORDER BY type",
            [task_id],
        ) == [("reserve", 1), ("settle", 1)]
        books.check_money()
        books.check_webhooks(allow_duplicates=False)


def test_web_processes_killed_at_random_under_load_no_key_runs_twice(stack):
    kills = int(os.environ.get("RIVYA_WEB_KILLS", "4"))
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        tenant = tenants.add("web-kill-load", credits=100_000, endpoints=[["*"]])
        models = media_models(stack, tenant.secrets[0])
        load = Load(
            stack, tenants, rate=8, seconds=8 * kills + 8, models=models, threads=8,
            mix={"submit": 3, "submit_wait": 4, "poll": 2, "cancel": 1, "upload": 1},
        ).start()  # fmt: skip
        rng = random.Random(14)
        killed = []
        for _ in range(kills):
            time.sleep(rng.uniform(5, 9))
            victim = rng.choice(stack.web_worker_pids())
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            wait_until(lambda: len(stack.web_worker_pids()) == 2, timeout=30, what="a replacement web process")
        load.join()

        books = Books(stack, tenants, receiver)
        drained = books.drain()
        figures = {
            **load.summary(),
            "web_processes_killed": len(killed),
            "cut_off": sum(1 for o in load.outcomes if o.status is None),
            "drain_s": round(drained, 1),
            "idempotency": books.check_idempotency(load),
            "tasks": books.check_tasks(load.submissions),
            "money": books.check_money(),
            "webhooks": books.check_webhooks(allow_duplicates=True),
        }
        print("\nweb kills under load:", json.dumps(figures, indent=1, default=str))  # noqa: T201
        dirty = [o for o in load.outcomes if not o.clean()]
        assert not dirty, [(o.op, o.status, o.body[:200]) for o in dirty[:5]]
        assert not [o for o in load.outcomes if o.server_error], "a 5xx answered"
        assert figures["cut_off"] > 0, "no kill landed on a request in flight"
        books.terminal_events_per_task()
