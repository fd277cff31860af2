"""PostgreSQL crashes under load and is started again: requests fail cleanly, then everything recovers.

The cluster gets SIGQUIT (immediate shutdown: every session is cut, as in a
crash) while clients submit and poll, stays down for a few seconds, then starts
on the same port and recovers. Expected, and checked:

* while it is down, requests are answered 503 ``service_unavailable`` with
  Retry-After in the error shape: never a 500, a stack trace or an HTML page;
* the web processes are not restarted: their pooled connections are health-checked
  and replaced, and requests succeed again within seconds of the restart;
* the Celery worker and beat keep running; tasks whose worker lost the database
  mid-run are noticed by the sweeper (lapsed heartbeat) and retried or failed
  and released;
* afterwards no key ran twice, every task is finished, every event delivered,
  and the ledger balances to the credit.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tests.faults.harness import report
from tests.faults.traffic import Books, Load, Tenants, media_models
from tests.rivya_webhooks.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]

DOWN_SECONDS = 8
# Requests already waiting on the pool when the server comes back may still time out just after.
RECOVERY_GRACE = 15
LOAD_SECONDS = float(os.environ.get("RIVYA_FAULT_LOAD_SECONDS", "40"))


def test_postgres_restart_during_load_fails_cleanly_and_recovers(stack, fault_environment):
    postgres = fault_environment.postgres
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        tenant = tenants.add("pg-a", credits=100_000, endpoints=[["*"]])
        tenants.add("pg-b", credits=100_000, endpoints=[["generation.succeeded", "generation.failed"]])
        models = media_models(stack, tenant.secrets[0])
        pids = stack.pids()
        load = Load(
            stack, tenants, rate=6, seconds=LOAD_SECONDS, models=models, threads=8,
            mix={"submit": 4, "poll": 3, "models": 1, "events": 1, "cancel": 1},
        ).start()  # fmt: skip
        time.sleep(LOAD_SECONDS / 4)
        down_at = time.monotonic()
        postgres.stop(immediate=True)
        time.sleep(DOWN_SECONDS)
        postgres.start()
        up_at = time.monotonic()
        load.join()

        books = Books(stack, tenants, receiver)
        drained = books.drain()
        during = load.between(down_at, up_at)
        after = load.between(up_at, float("inf"))
        first_ok = next((o.started + o.elapsed - up_at for o in after if o.status in (200, 202)), None)
        late = [o for o in load.between(up_at + RECOVERY_GRACE, float("inf")) if o.server_error or o.status is None]
        figures = {
            **load.summary(),
            "during_outage": {"requests": len(during), "answers": dict(Counter(o.status for o in during))},
            "first_success_after_restart_s": first_ok,
            "failures_after_grace": len(late),
            "drain_s": round(drained, 1),
            "tasks": books.check_tasks(load.submissions),
            "money": books.check_money(),
            "webhooks": books.check_webhooks(allow_duplicates=True),
            "idempotency": books.check_idempotency(load),
        }
        report("postgres restart", figures)

        dirty = [o for o in load.outcomes if not o.clean()]
        assert not dirty, [(o.op, o.status, o.content_type, o.body[:300]) for o in dirty[:5]]
        unexpected = [(o.op, o.status, o.code) for o in load.outcomes if o.server_error and o.status != 503]
        assert not unexpected, unexpected[:5]
        unavailable = [o for o in load.outcomes if o.status == 503]
        assert unavailable, "no request met the outage"
        assert all(o.code == "service_unavailable" for o in unavailable)
        assert all(down_at <= o.started + o.elapsed and o.started <= up_at + RECOVERY_GRACE for o in unavailable)
        assert first_ok is not None
        assert not late, [(o.op, o.status, o.error) for o in late[:5]]
        books.terminal_events_per_task()
        assert stack.pids() == pids, "a process was restarted (or died) instead of reconnecting"
