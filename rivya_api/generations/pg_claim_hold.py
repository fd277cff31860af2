"""A generation's claim and its hold's lease in one statement (PostgreSQL).

``pg_claim``'s UPDATE of the task and billing's renew of the task's hold (``pg_renew``, taken
through ``holds._hold_renew_joined``) are two statements, two round trips, in the claim's
transaction. Here they are one: ``WITH c AS (<pg_claim's UPDATE>), h AS (UPDATE <hold> …
FROM <wallet>, c …) SELECT c.*, h.lease_token FROM c LEFT JOIN h``. The hold's part is
``pg_renew``'s UPDATE for a claim (no token: the token goes up by one, the lease runs
``GENERATION_RUN_LEASE`` from the moment it is sent, as billing's renew takes it), joined to the
claimed row for its account and reference, so it runs only for a task this claim won and that
has a price. The task's row is locked first (the hold's UPDATE reads the claim's output), as in
the plain order.

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
from django.utils import timezone

from rivya_api.catalog.registry import loaded_catalog
from rivya_api.conf import api_settings
from rivya_api.generations import pg_claim
from rivya_api.generations.models import GenerationTask
from rivya_billing.models import Hold, HoldState, Wallet
from rivya_billing.services import pg_renew
from rivya_core.rows import instance_from_row


def enabled() -> bool:
    return bool(api_settings.GENERATION_CLAIM_HOLD_SQL) and pg_claim.enabled() and pg_renew.enabled()


def claim(*, task_pk: int, now: datetime, lease: timedelta) -> tuple[GenerationTask, int | None] | None:
    """The claimed task (its account loaded) and its hold's new lease token (None: a free task, or
    the hold's part matched no row), or None when the task is not queued (or gone)."""
    heartbeat = api_settings.GENERATION_HEARTBEAT_TIMEOUT.total_seconds()
    hold_now = timezone.now()  # billing's renew takes its own "now" when it runs
    params = {
        "pk": task_pk,
        "now": now,
        "queued": GenerationTask.Status.QUEUED,
        "running": GenerationTask.Status.RUNNING,
        "limits": pg_claim.limits_json(loaded_catalog(), heartbeat),
        "fallback": heartbeat,
        "hold_now": hold_now,
        "hold_expires": hold_now + timedelta(seconds=int(lease.total_seconds())),
        "pending": HoldState.PENDING,
    }
    with connection.cursor() as cursor:
        cursor.execute(_statement(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(GenerationTask._meta.concrete_fields)
    task = instance_from_row(GenerationTask, row[:split])
    task.account = instance_from_row(pg_claim._account_model(), row[split:-1])
    return task, row[-1]


@cache
def _statement() -> str:
    """The claim's UPDATE as a CTE (its columns renamed: the task's and the account's may share
    names), the hold's UPDATE joined to it, and the claimed row with the hold's new token."""
    meta, quote = GenerationTask._meta, connection.ops.quote_name
    hold, wallet = Hold._meta, Wallet._meta
    task_fields = meta.concrete_fields
    account_fields = meta.get_field("account").related_model._meta.concrete_fields
    names = [f"c{index}" for index in range(len(task_fields) + len(account_fields))]

    def c(name: str) -> str:
        return "c." + names[task_fields.index(meta.get_field(name))]

    def h(name: str) -> str:
        return f"h.{quote(hold.get_field(name).column)}"

    token = quote(hold.get_field("lease_token").column)
    return (
        f"WITH c ({', '.join(names)}) AS ({pg_claim._statement()}),"
        f" h AS (UPDATE {quote(hold.db_table)} AS h"
        f" SET {quote(hold.get_field('lease_expires_at').column)} = %(hold_expires)s, {token} = h.{token} + 1"
        f" FROM {quote(wallet.db_table)} AS w, c"
        f" WHERE w.{quote(wallet.get_field('id').column)} = {h('wallet')}"
        f" AND w.{quote(wallet.get_field('account').column)} = {c('account')}"
        f" AND {h('reference')} = {c('public_id')} AND {c('price')} > 0"
        f" AND {h('state')} = %(pending)s AND {h('lease_expires_at')} > %(hold_now)s"
        f" RETURNING h.{token})"
        f" SELECT c.*, h.{token} FROM c LEFT JOIN h ON true"
    )
