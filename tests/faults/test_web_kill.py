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
from typing import Any

import httpx
import psycopg
import pytest

from tests.faults.harness import pid_with_local_port, report, wait_until
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
        report("web kill mid-POST", {"retries_answered": answers})
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
            stack, tenants, rate=8, seconds=8 * kills + 8, models=models, threads=16,
            # Slow long-polls keep a few requests in flight on every web process, so each kill cuts some.
            mix={"submit": 3, "submit_wait": 2, "submit_slow_wait": 3, "poll": 2, "cancel": 1, "upload": 1},
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
        report("web kills under load", figures)
        dirty = [o for o in load.outcomes if not o.clean()]
        assert not dirty, [(o.op, o.status, o.body[:200]) for o in dirty[:5]]
        assert not [o for o in load.outcomes if o.server_error], "a 5xx answered"
        assert figures["cut_off"] > 0, "no kill landed on a request in flight"
        books.terminal_events_per_task()


def _open_chat_stream(stack, secret: str, key: str | None, read: int) -> tuple[httpx.Client, Any, str, list[str]]:
    """A streamed turn on the slow chat model, ``read`` events in; the connection is left open."""
    client = httpx.Client(timeout=30)
    headers = {"Authorization": f"Bearer {secret}", **({"Idempotency-Key": key} if key else {})}
    body = {"model": "rivya-chat-slow-1", "messages": [{"role": "user", "content": "tell me about kites"}],
            "stream": True}  # fmt: skip
    response = client.send(
        client.build_request("POST", stack.base_url + "/api/v1/chat/completions", json=body, headers=headers),
        stream=True,
    )
    assert response.status_code == 200, response.read()
    lines = response.iter_lines()
    events = []
    while len(events) < read:
        line = next(lines)
        if line.startswith("data: "):
            events.append(line[6:])
    return client, lines, response.headers["Rivya-Session-Id"], events


def _chat_attempt(stack, secret: str, key: str) -> tuple[int, list[str]]:
    """One whole streamed request under ``key``: (status, data lines)."""
    body = {"model": "rivya-chat-slow-1", "messages": [{"role": "user", "content": "tell me about kites"}],
            "stream": True}  # fmt: skip
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": key}
    with httpx.stream("POST", stack.base_url + "/api/v1/chat/completions", json=body, headers=headers,
                      timeout=60) as response:  # fmt: skip
        if response.status_code != 200:
            response.read()
            return response.status_code, []
        return 200, [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_web_processes_killed_mid_chat_stream_no_turn_runs_or_charges_twice(stack):
    """Two streamed turns, one under an Idempotency-Key, cut by killing every web process.

    The keyed client retries (as the SDKs do): 409 while the dead attempt's claim runs,
    then the turn runs once more and answers in full; the dead turn is released, never
    charged. The other client never comes back: the stale-turn sweeper releases its hold.
    """
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        tenant = tenants.add("chat-kill", credits=10_000, keys=1, endpoints=[])
        secret = tenant.secrets[0]
        key = new_key()
        keyed = _open_chat_stream(stack, secret, key, read=3)
        abandoned = _open_chat_stream(stack, secret, None, read=3)
        victims = stack.web_worker_pids()
        killed_at = time.monotonic()
        for victim in victims:
            os.kill(victim, signal.SIGKILL)
        for client, lines, _, _ in (keyed, abandoned):
            with pytest.raises(httpx.HTTPError):
                for _ in lines:
                    pass
            client.close()
        wait_until(lambda: len(stack.web_worker_pids()) == 2 and not set(victims) & set(stack.web_worker_pids()),
                   timeout=30, what="the process manager to replace the killed web processes")  # fmt: skip

        # The SDK's retries: 409 while the dead attempt's claim runs, or attached to the dead turn's
        # buffer until its process is known gone (an error event); then the turn runs once more.
        answers, events = [], []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status, events = _chat_attempt(stack, secret, key)
            if events and events[-1] == "[DONE]":
                break
            answers.append(status if status != 200 else json.loads(events[-1])["error"]["code"])
            time.sleep(1)
        recovered_after = time.monotonic() - killed_at
        assert events, answers
        assert events[-1] == "[DONE]", events[-3:]
        usage = json.loads(events[-2])["usage"]
        assert usage["credits"] > 0

        turns = stack.sql(
            "SELECT public_id, status, error_code, credits_charged FROM rivya_api_chatmessage "
            "WHERE role = 'assistant' AND idempotency_key = %s ORDER BY id",
            [key],
        )
        # Failed by the retry that took the key over, or by the stale-turn sweeper if it came first.
        assert [status for _, status, _, _ in turns] == ["failed", "completed"], turns
        assert turns[0][2] in ("turn_interrupted", "turn_timeout"), turns
        assert turns[1][3] == usage["credits"]
        wait_until(
            lambda: stack.sql("SELECT count(*) FROM rivya_api_chatmessage WHERE role = 'assistant' "
                              "AND status = 'in_progress'")[0][0] == 0,
            timeout=60, what="the stale-turn sweeper to fail the abandoned turn",
        )  # fmt: skip
        swept_after = time.monotonic() - killed_at

        lines_by_type = stack.sql(
            "SELECT e.reference, e.type FROM rivya_billing_ledgerentry e WHERE e.type <> 'grant' ORDER BY e.id"
        )
        by_reference: dict[str, list[str]] = {}
        for reference, kind in lines_by_type:
            by_reference.setdefault(reference, []).append(kind)
        # Three turns, each reserved once; only the answered one settled (its unused remainder released).
        assert len(by_reference) == 3, by_reference
        settled = {ref: kinds for ref, kinds in by_reference.items() if "settle" in kinds}
        assert list(settled.values()) == [["reserve", "settle", "release"]], by_reference
        dead = [kinds for ref, kinds in by_reference.items() if ref not in settled]
        assert dead == [["reserve", "release"], ["reserve", "release"]], by_reference
        assert not stack.sql("SELECT reference FROM rivya_billing_hold WHERE state = 'pending'")
        done = stack.manage("rivya_ledger_check")
        assert done.returncode == 0, done.stdout + done.stderr
        (balance,) = stack.sql("SELECT balance FROM rivya_billing_wallet WHERE account_id = %s", [tenant.account_id])[0]
        assert balance == tenant.granted - usage["credits"]
        replay = httpx.post(
            stack.base_url + "/api/v1/chat/completions",
            json={"model": "rivya-chat-slow-1", "messages": [{"role": "user", "content": "tell me about kites"}],
                  "stream": True},
            headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": key}, timeout=30,
        )  # fmt: skip
        assert replay.headers.get("Idempotent-Replayed") == "true"
        figures = {
            "web_processes_killed": len(victims),
            "retries_before_the_answer": answers,
            "retry_answered_after_s": round(recovered_after, 1),
            "abandoned_turn_released_after_s": round(swept_after, 1),
            "charged": usage["credits"],
        }
        report("web kill mid chat stream", figures)
