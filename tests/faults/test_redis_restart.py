"""Redis (broker, cache, rate limits) dies under load and comes back empty.

The Redis server is SIGKILLed while clients submit and poll generations, then
started again on the same port with no data: every queued message, cached key
and rate counter is gone. Expected, and checked:

* no request is answered 500 or outside the error shape; reads keep working
  (the key cache and the rate limiter fail open to the database); a submission
  made while the broker is down is still accepted (202): the task and its hold
  are committed and the sweeper queues the message the broker could not take;
* the web processes, the Celery worker and beat reconnect by themselves: the
  same processes run before and after;
* afterwards every accepted task is finished exactly once, every event reached
  every subscribed endpoint, and the ledger balances to the credit.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import httpx
import pytest

from tests.faults.harness import report
from tests.faults.traffic import Books, Load, Tenants, media_models
from tests.rivya_webhooks.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]

DOWN_SECONDS = 8
LOAD_SECONDS = float(os.environ.get("RIVYA_FAULT_LOAD_SECONDS", "40"))


def test_redis_restart_during_load_loses_nothing(stack, fault_environment):
    redis = fault_environment.redis
    with Receiver() as receiver:
        tenants = Tenants(stack, receiver)
        tenant = tenants.add("redis-a", credits=100_000, endpoints=[["*"], ["generation.succeeded"]])
        tenants.add("redis-b", credits=100_000, endpoints=[["*"]])
        models = media_models(stack, tenant.secrets[0])
        pids = stack.pids()
        load = Load(
            stack, tenants, rate=6, seconds=LOAD_SECONDS, models=models,
            mix={"submit": 4, "poll": 3, "models": 1, "events": 1, "cancel": 1},
        ).start()  # fmt: skip
        time.sleep(LOAD_SECONDS / 4)
        down_at = time.monotonic()
        redis.stop(kill=True)
        time.sleep(1)
        readiness = httpx.get(stack.base_url + "/readyz", timeout=10)
        time.sleep(DOWN_SECONDS - 1)
        redis.start()
        up_at = time.monotonic()
        load.join()

        books = Books(stack, tenants, receiver)
        drained = books.drain()
        during = load.between(down_at, up_at)
        after = load.between(up_at, float("inf"))
        recovered = next((o.started - up_at for o in after if o.op == "submit" and o.status == 202), None)
        figures = {
            **load.summary(),
            "during_outage": {"requests": len(during), "answers": dict(Counter(o.status for o in during))},
            "first_accepted_submission_after_restart_s": recovered,
            "drain_s": round(drained, 1),
            "tasks": books.check_tasks(load.submissions),
            "money": books.check_money(),
            "webhooks": books.check_webhooks(allow_duplicates=True),
            "idempotency": books.check_idempotency(load),
            "submissions_the_broker_refused": stack.log_count("web", "Could not queue generation"),
        }
        report("redis restart", figures)

        dirty = [o for o in load.outcomes if not o.clean()]
        assert not dirty, [(o.op, o.status, o.body[:200]) for o in dirty[:5]]
        server_errors = [(o.op, o.status, o.body[:200]) for o in load.outcomes if o.server_error]
        assert not server_errors, server_errors[:5]
        assert during, "no request was sent while Redis was down"
        assert recovered is not None
        # The outage was real: readiness said so, and submissions met a broker that was not there
        # (those were accepted anyway and queued by the sweeper: every task finished above).
        assert readiness.status_code == 503
        assert "broker" in readiness.json()["unavailable"]
        assert figures["submissions_the_broker_refused"] > 0
        books.terminal_events_per_task()
        assert stack.pids() == pids, "a process was restarted (or died) instead of reconnecting"
