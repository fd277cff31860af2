"""The PostgreSQL fast path of a generation's claim: one ``UPDATE … RETURNING`` of the task row.

The plain claim (``services._start_locked``) reads the task and its account under a row lock
(``SELECT … FOR UPDATE``, an ORM query compiled on every job) and saves the new state with a
second statement. Here one UPDATE, conditional on the task still being queued, makes the same
change and returns the task and its account: ``status`` running, ``attempts`` + 1,
``started_at`` (kept if set), ``heartbeat_at``, ``event_sequence`` + 1, ``deadline_at`` from the
model's time limit (the loaded catalog's limits are passed in, built once per catalog load; a
model not in it gets the plain path's fallback, the heartbeat's lease) and, for a priced task,
``hold_token`` as the next lease token of its hold (the hold's token only moves with claims,
each of which stores it on the task).

The caller (``services._start_fast``) then takes the hold's lease in the same transaction
(billing's service, or in this UPDATE's statement with ``pg_claim_hold``) and checks both guesses
against what the plain path would have set (the deadline from ``run_deadline``, the token billing
returned); when either differs it rolls the
claim back and runs the plain path, so a wrong guess costs time, never a wrong row (a model
loaded but not listed now is such a guess: the plain path gives it the fallback). Concurrent
claims of one task: the UPDATE waits for the other's row lock and re-checks ``status`` on the
committed row, so one wins and the others match no row (None), as with the plain row lock.

``RIVYA_API["GENERATION_CLAIM_SQL"] = False`` switches it off (SQLite always takes the plain path);
``tests/rivya_api/generations/test_pg_claim.py`` compares the two paths and races claims.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from rivya_api.catalog.registry import LoadedCatalog, loaded_catalog
from rivya_api.conf import api_settings
from rivya_api.generations.models import GenerationTask
from rivya_core.rows import in_one_table, instance_from_row

Status = GenerationTask.Status


def enabled() -> bool:
    return (
        connection.vendor == "postgresql" and bool(api_settings.GENERATION_CLAIM_SQL) and in_one_table(_account_model())
    )


def _account_model() -> Any:
    return GenerationTask._meta.get_field("account").related_model


def claim(*, task_pk: int, now: datetime) -> GenerationTask | None:
    """The task, claimed and with its account loaded, or None when it is not queued (or gone)."""
    heartbeat = api_settings.GENERATION_HEARTBEAT_TIMEOUT.total_seconds()
    params = {
        "pk": task_pk,
        "now": now,
        "queued": Status.QUEUED,
        "running": Status.RUNNING,
        "limits": limits_json(loaded_catalog(), heartbeat),
        "fallback": heartbeat,
    }
    with connection.cursor() as cursor:
        cursor.execute(_statement(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    account_model = _account_model()
    split = len(GenerationTask._meta.concrete_fields)
    task = instance_from_row(GenerationTask, row[:split])
    task.account = instance_from_row(account_model, row[split:])
    return task


_limits: tuple[LoadedCatalog, float, str] | None = None


def limits_json(catalog: LoadedCatalog, heartbeat: float) -> str:
    """Each loaded model's time limit plus the heartbeat's lease, as the statement's JSON: built once
    per catalog load (a reload makes a new ``LoadedCatalog``), not by listing the catalog on every
    claim (which asked each provider's ``is_configured``, logging a failing one every time)."""
    global _limits
    cached = _limits
    if cached is None or cached[0] is not catalog or cached[1] != heartbeat:
        limits = {model.id: model.timeout_seconds + heartbeat for model in catalog.models.values()}
        cached = _limits = (catalog, heartbeat, json.dumps(limits))
    return cached[2]


@cache
def _statement() -> str:
    """The UPDATE, from the models' own table and column names (the account model is the host's)."""
    meta, quote = GenerationTask._meta, connection.ops.quote_name
    account = meta.get_field("account")
    account_meta = account.related_model._meta

    def t(name: str) -> str:
        return quote(meta.get_field(name).column)

    returning = [f"t.{quote(field.column)}" for field in meta.concrete_fields]
    returning += [f"a.{quote(field.column)}" for field in account_meta.concrete_fields]
    return (
        f"UPDATE {quote(meta.db_table)} AS t SET"
        f" {t('status')} = %(running)s, {t('attempts')} = t.{t('attempts')} + 1,"
        f" {t('started_at')} = COALESCE(t.{t('started_at')}, %(now)s), {t('heartbeat_at')} = %(now)s,"
        f" {t('deadline_at')} = %(now)s + make_interval(secs => COALESCE("
        f"(%(limits)s::jsonb ->> t.{t('model')})::double precision, %(fallback)s)),"
        f" {t('hold_token')} = CASE WHEN t.{t('price')} > 0 THEN COALESCE(t.{t('hold_token')}, 0) + 1"
        f" ELSE t.{t('hold_token')} END,"
        f" {t('event_sequence')} = t.{t('event_sequence')} + 1"
        f" FROM {quote(account_meta.db_table)} AS a"
        f" WHERE t.{t('id')} = %(pk)s AND t.{t('status')} = %(queued)s"
        f" AND a.{quote(account.target_field.column)} = t.{quote(account.column)}"
        f" RETURNING {', '.join(returning)}"
    )
