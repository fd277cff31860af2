"""Soak: two minutes of steady, mixed traffic against the production stack, then the books must balance.

Three accounts with several keys each (one more key issued halfway through),
generations of every media model the stack lists (including one whose upstream
always fails), long-polled submissions, cancels, uploads, reads of tasks,
events and endpoints, chat turns (streamed, plain, and streamed then dropped by
the client and resumed by Last-Event-ID; a quarter continue a session), and
webhook endpoints receiving at a local receiver, with different subscriptions. Then, after the work drains:

* zero 5xx and no answer outside the error shape;
* zero lost tasks: every accepted task finished, one task per Idempotency-Key;
* every event delivered exactly once to every endpoint subscribed to it
  (signed; a redelivery would share its ``webhook-id``, and there is none);
* every chat turn ended, one per Idempotency-Key, charged exactly the price of
  the tokens it produced (computed here from the public pricing) and what its
  client saw in ``usage``;
* ``manage.py rivya_ledger_check`` clean, nothing held, and the sum of charges
  equals the sum of the prices of the work that succeeded plus the chat turns'
  token charges, per account and in total.

``RIVYA_SOAK_SECONDS`` sets the length (default 120; ``make soak``).
"""

from __future__ import annotations

import os
import time

import pytest

from tests.faults.harness import report
from tests.faults.traffic import Books, Load, Tenants, media_models
from tests.rivya_webhooks.receiver import Receiver

SOAK_SECONDS = float(os.environ.get("RIVYA_SOAK_SECONDS", "120"))
RATE = float(os.environ.get("RIVYA_SOAK_RATE", "6"))

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(SOAK_SECONDS + 600)]

MIX = {
    "submit": 4,
    "submit_wait": 1,
    "poll": 3,
    "cancel": 1,
    "upload": 1,
    "models": 1,
    "events": 1,
    "webhooks": 1,
    "chat": 2,
}


def test_soak_mixed_traffic_loses_nothing_and_charges_exactly(stack):
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        first = tenants.add("soak-a", credits=1_000_000, keys=2, endpoints=[["*"], ["generation.succeeded"]])
        tenants.add("soak-b", credits=1_000_000, keys=2, endpoints=[["*"]])
        tenants.add("soak-c", credits=1_000_000, keys=1, endpoints=[["generation.failed", "generation.canceled"]])
        models = media_models(stack, first.secrets[0])
        assert {m["kind"] for m in models} >= {"image", "audio", "video"}
        pids = stack.pids()

        load = Load(stack, tenants, rate=RATE, seconds=SOAK_SECONDS, models=models, threads=8, mix=MIX).start()
        time.sleep(SOAK_SECONDS / 2)
        load.add_key(first, stack.bootstrap("soak-a", credits=0))  # a key issued mid-run is used at once
        load.join()

        books = Books(stack, tenants, receiver)
        drained = books.drain()
        tasks = books.check_tasks(load.submissions)
        prices = dict(stack.sql("SELECT public_id, price FROM rivya_api_generationtask WHERE status = 'succeeded'"))
        settle_sum = "SELECT coalesce(sum(amount), 0) FROM rivya_billing_ledgerentry WHERE type = 'settle'"
        (settled,) = stack.sql(settle_sum)[0]
        chat = books.check_chat(load)
        figures = {
            "seconds": SOAK_SECONDS,
            "rate_per_s": RATE,
            **load.summary(),
            "latency_ms": load.latencies(),
            "drain_s": round(drained, 1),
            "tasks": tasks,
            "models": sorted(m["id"] for m in models),
            "idempotency": books.check_idempotency(load),
            "money": books.check_money(),
            "chat": chat,
            "succeeded_prices": sum(prices.values()),
            "chat_token_charges": chat["charged"],
            "settled": int(settled),
            "webhooks": books.check_webhooks(allow_duplicates=False),
        }
        report("soak", figures)

        assert not [o for o in load.outcomes if o.server_error], "a 5xx answered"
        cut = [o for o in load.outcomes if o.status is None]
        assert not cut, [(o.op, o.error) for o in cut[:5]]
        dirty = [o for o in load.outcomes if not o.clean()]
        assert not dirty, [(o.op, o.status, o.body[:200]) for o in dirty[:5]]
        assert figures["succeeded_prices"] + figures["chat_token_charges"] == figures["settled"]
        assert set(chat["by_mode"]) == {"stream", "json", "dropped"}, chat
        assert chat["usage_seen_by_clients"] >= chat["sent"] * 0.9, chat
        assert {"succeeded", "failed", "canceled"} <= set(tasks["by_status"]), tasks
        assert load.dropped <= len(load.outcomes) // 50, "the load could not keep its rate"
        books.terminal_events_per_task()
        assert stack.pids() == pids, "a process died or was replaced during the soak"
