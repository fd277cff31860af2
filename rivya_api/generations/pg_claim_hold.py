"""A generation's claim and its hold's lease in one statement (PostgreSQL).

``pg_claim``'s UPDATE of the task and billing's renew of the task's hold (``pg_renew``, taken
through ``leases._hold_renew_joined``) are two statements, two round trips, in the claim's
transaction. Here they are one: ``WITH c AS (<pg_claim's UPDATE>), h AS (UPDATE <hold> …
FROM <wallet>, c …) SELECT c.*, h.lease_token FROM c LEFT JOIN h``. The hold's part is billing's
(``pg_renew._claim_cte``: its renew for a claim, the token up by one, the lease
``GENERATION_RUN_LEASE`` from billing's "now"; the lease's rules stay in billing), joined to the
claimed row for its account and reference, so it runs only for a task this claim won and that
has a price. The task's row is locked first (the hold's UPDATE reads the claim's output), as in
the plain order.

One difference from the plain path, kept: billing's "now" (the lapse check and the new lease) is
taken in Python before the statement is sent, so before it waits for a task row another claim
holds; the plain path takes it after that wait. A claim that waited thus ends its lease earlier by
the wait (and a hold lapsing during the wait is still renewed). The waiting claim then finds the
task running and matches no row, so this only matters for a claim that waited for a transaction
that rolled back. ``clock_timestamp()`` in the statement would not be the same either: the
database's clock, where both billing paths take the application's.

What is not written by it is decided as before: the caller (``services._start_fast``) checks the
deadline and the token against the plain path's values and rolls the claim back for the plain
path (``services._start_locked``) when either is off, and so also when the hold's part matched
no row (no such hold, not pending, lease lapsed): billing's plain renew then refuses with its own
errors, as after ``pg_renew``'s statement matched none.

Taken when ``pg_claim`` is (``GENERATION_CLAIM_SQL``) and billing's ``PG_HOLD_RENEW`` is on;
``RIVYA_API["GENERATION_CLAIM_HOLD_SQL"] = False`` switches it off (the claim is then
``pg_claim``'s UPDATE and billing's renew). ``tests/rivya_api/generations/test_pg_claim.py``
compares the three paths.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from django.db import connection

from rivya_api.catalog.registry import loaded_catalog
from rivya_api.conf import api_settings
from rivya_api.generations import pg_claim
from rivya_api.generations.models import GenerationTask
from rivya_billing.models import Hold
from rivya_billing.services import pg_renew
from rivya_core.rows import instance_from_row


def enabled() -> bool:
    return bool(api_settings.GENERATION_CLAIM_HOLD_SQL) and pg_claim.enabled() and pg_renew.enabled()


def claim(*, task_pk: int, now: datetime, lease: timedelta) -> tuple[GenerationTask, int | None] | None:
    """The claimed task (its account loaded) and its hold's new lease token (None: a free task, or
    the hold's part matched no row), or None when the task is not queued (or gone)."""
    heartbeat = api_settings.GENERATION_HEARTBEAT_TIMEOUT.total_seconds()
    renew, renew_params = pg_renew._claim_cte(
        source="c",
        account=_c("account"),
        reference=_c("public_id"),
        condition=f"{_c('price')} > 0",
        lease_seconds=int(lease.total_seconds()),
        prefix="hold_",
    )
    params = {
        "pk": task_pk,
        "now": now,
        "queued": GenerationTask.Status.QUEUED,
        "running": GenerationTask.Status.RUNNING,
        "limits": pg_claim.limits_json(loaded_catalog(), heartbeat),
        "fallback": heartbeat,
        **renew_params,
    }
    with connection.cursor() as cursor:
        cursor.execute(_statement(renew), params)
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(GenerationTask._meta.concrete_fields)
    task = instance_from_row(GenerationTask, row[:split])
    task.account = instance_from_row(pg_claim._account_model(), row[split:-1])
    return task, row[-1]


@cache
def _names() -> list[str]:
    """The claim CTE's column names: the task's and the account's may share names."""
    meta = GenerationTask._meta
    account_fields = meta.get_field("account").related_model._meta.concrete_fields
    return [f"c{index}" for index in range(len(meta.concrete_fields) + len(account_fields))]


def _c(name: str) -> str:
    """The claim CTE's column of the task's field ``name``."""
    meta = GenerationTask._meta
    return "c." + _names()[meta.concrete_fields.index(meta.get_field(name))]


@cache
def _statement(renew: str) -> str:
    """The claim's UPDATE as a CTE, billing's renew of the hold (``renew``) joined to it, and the
    claimed row with the hold's new token."""
    token = connection.ops.quote_name(Hold._meta.get_field("lease_token").column)
    return (
        f"WITH c ({', '.join(_names())}) AS ({pg_claim._statement()}), h AS ({renew})"
        f" SELECT c.*, h.{token} FROM c LEFT JOIN h ON true"
    )
