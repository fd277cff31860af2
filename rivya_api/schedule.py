"""The periodic sweeps of all three apps, as a Celery beat schedule.

A project with its own Celery app merges it into its schedule with one line::

    from rivya_api.schedule import BEAT_SCHEDULE as RIVYA_BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**RIVYA_BEAT_SCHEDULE, ...}  # then run `celery -A proj beat`

In-process mode runs the same schedule in the web process (``rivya_api.background``).
Plain data with no Django import, so a settings module may import it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Chat turns whose process died mid-turn: fail them and release their holds.
    "rivya-chat-stale-turns": {"task": "rivya_api.chat_turns_fail_stale", "schedule": 60},
    # Queue webhook deliveries that are due and not carried by a broker message
    # (long retries, or messages a Redis restart lost).
    "rivya-webhooks-sweep": {"task": "rivya_webhooks.sweep", "schedule": 10.0},
    # Delete webhook events past their retention (30 days).
    "rivya-webhooks-cleanup": {"task": "rivya_webhooks.cleanup", "schedule": 3600.0},
    # Deletes the bytes of expired (and deleted) files.
    "rivya-files-expire": {"task": "rivya_api.files.tasks.file_expire_due", "schedule": 15 * 60},
    # Re-queues generations the broker lost; fails or retries those whose worker died.
    "rivya-generations-sweep": {"task": "rivya_api.generations_sweep", "schedule": 30},
    # Holds whose lease lapsed (their worker died) give their credits back.
    "rivya-billing-expire-lapsed-holds": {
        "task": "rivya_billing.tasks.credits_expire_lapsed_holds",
        "schedule": timedelta(seconds=60),
    },
    # What is left (and not held) of grants past their expires_at leaves the wallet.
    "rivya-billing-expire-grants": {
        "task": "rivya_billing.tasks.credits_expire_grants",
        "schedule": timedelta(seconds=60),
    },
    # credits.low webhook events for low-balance crossings the wallets recorded (one per crossing).
    "rivya-credits-low-events": {"task": "rivya_api.credits_low_events_publish", "schedule": 5.0},
    # Idempotency-Key records past their retention (RIVYA_API IDEMPOTENCY_RETENTION_SECONDS).
    "rivya-idempotency-purge": {
        "task": "rivya_api.idempotency.tasks.idempotency_records_purge_task",
        "schedule": 60 * 60,
    },
}

# The modules that define the tasks above (what Celery's autodiscovery would import).
TASK_MODULES = ["rivya_api.tasks", "rivya_billing.tasks", "rivya_webhooks.tasks"]
