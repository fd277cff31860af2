"""A generation's success sent as one query: ``BEGIN; <locking read>; <settle and writes>; COMMIT; <flush>``.

The plain finish (``finishing._succeed_in_transaction``, with ``pg_succeed`` and billing's joined
settle) is six round trips on a no-op job: BEGIN, the outputs' rows with the task's conditional
success UPDATE (``pg_succeed``), the settle (``holds._settle_joined``), the webhook event
(``pg_event``), COMMIT and the WAL flush of early lock release. Here the same transaction is one
simple-protocol query (psycopg 3 with client-side binding, ``rivya_api.common.pg_batch``; its BEGIN
names READ COMMITTED whatever the connection's default):

1. ``SELECT … FOR UPDATE`` of the task's row: the lock the plain path's UPDATE takes first (task,
   then the hold and the wallet in the settle: the same order);
2. one statement whose snapshot is taken under that lock: the task as this run's claim left it
   (running, the run's hold token and attempt, its cancel not asked, its sequence unchanged) and
   its account without an enabled webhook endpoint; for it the settle of exactly the task's price
   (``pg_settle._joined_call``, the run's lease token); and only when the settle wrote (a free
   task: always) the outputs' rows, the task's success, the outputs' links and the
   ``generation.succeeded`` event (``pg_event._joined_insert``: its one row, the outbox the
   deliveries are made from; no endpoint, no delivery). A check fails the statement (a cast) if
   the settle wrote but the task's row or the event did not, so a capture never commits alone.

Nothing refused is an error: a task no longer under this run's claim (a cancel asked, a sweep's
fail, another run), an account with an enabled endpoint (its deliveries are the plain path's), a
hold whose lease lapsed or that is gone: an empty transaction commits and the caller's plain finish
decides, with its own locks and errors. An account refused while it had an enabled endpoint (the
locking read says whether it has one) is remembered for a minute (``endpoint_seen``), so its next
finishes go straight to the plain path instead of paying the refused batch each time. A failure
inside the transaction (a timeout, a deadlock) is rolled back and logged (SQLSTATE only) and the
plain finish runs; an error at or after the COMMIT is raised (the success may be written; a lost
connection as Django's ``OperationalError``). The event's ``pre_save``/``post_save`` are not sent
(as ``pg_event``: with a receiver connected, the plain path). Above ``pg_succeed.MAX_OUTPUTS``
outputs, inside a transaction, on psycopg2 or a server-binding cursor, with billing's ``PG_SETTLE``
or the webhooks' ``EVENT_INSERT_SQL`` off: the plain finish.

``RIVYA_API["GENERATION_FINISH_BATCHED"] = False`` switches it off (SQLite always takes the plain
path); ``tests/rivya_api/generations/test_pg_finish.py`` compares it with the plain path row by row
and races it against a cancel, a sweep and a superseding run.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from rivya_api.common import pg_batch
from rivya_api.conf import api_settings
from rivya_api.files.models import File
from rivya_api.generations import pg_succeed
from rivya_api.generations.models import GenerationTask
from rivya_billing.services import durability, pg_settle
from rivya_core.rows import insert_fields, mark_inserted
from rivya_webhooks.services import pg_event
from rivya_webhooks.services.publishing import _event

logger = logging.getLogger(__name__)
# A failure inside the batch: logged, then the plain finish runs.
_INSIDE = pg_batch.logged(logger, "The generation's finish batch")

Status = GenerationTask.Status
SETTLE, EVENT = "s_", "e_"  # the settle's and the event's parameters in the batch


def batched(task: GenerationTask, outputs: int) -> bool:
    """Whether this success can be sent as one query (see the module's docstring)."""
    return (
        connection.vendor == "postgresql"
        and bool(api_settings.GENERATION_FINISH_BATCHED)
        and outputs <= pg_succeed.MAX_OUTPUTS
        and (not task.price or pg_settle.enabled())
        and pg_event.enabled()
        and not endpoint_seen.has(task.account_id)
        and pg_batch.one_query_possible()
    )


def succeed_batched(
    task: GenerationTask, files: list[File], completed_at: datetime
) -> tuple[GenerationTask, dict[str, Any]] | None:
    """Write the success of ``task`` (as this run's claim left it) in one query; the task as written
    and its event's payload, or None when nothing was written (the plain finish then decides).

    ``files``: the outputs, stored, their rows not yet inserted (they get their pks here)."""
    from rivya_api.generations.presenters import generation_payload

    done = copy.copy(task)  # ``task`` stays as the run left it, for the plain finish
    done.status, done.charged, done.refunded, done.progress = Status.SUCCEEDED, task.price, 0, 100
    done.completed_at, done.event_sequence = completed_at, task.event_sequence + 1
    payload = generation_payload(done, request=None, outputs=files)
    payload["sequence"] = done.event_sequence
    event = _event(account=task.account, type="generation.succeeded", data=payload, clock=None)
    params = _params(task, files, completed_at, event)
    priced = bool(task.price)
    flush = f"; {durability.FLUSH}" if priced and params[SETTLE + "commit_early"] else ""
    rows = pg_batch.send(_batch(len(files), priced) + flush, params, inside=_INSIDE)
    row = rows and rows[2]  # past BEGIN's result and the locking read's
    if rows and row is None and rows[1] == (False,):  # refused, the account having an enabled endpoint
        endpoint_seen.remember(task.account_id)  # its next finishes skip the batch
    if row is None or row[0] != "settled":
        return None  # not under this run's claim, an endpoint, or the settle refused: nothing written
    _outcome, event_pk, file_pks, *hold = row
    for file, pk in zip(files, file_pks, strict=True):
        mark_inserted(file, pk)
    mark_inserted(event, event_pk)
    if priced:
        pg_settle._joined_hold(params, hold[:-1], SETTLE)
    return done, payload


class _EndpointSeen:
    """Accounts a batch was refused for while they had an enabled webhook endpoint (the locking
    read says so), so that their next finishes in this process go straight to the plain path
    instead of paying the refused batch's round trip and empty commit first. Only ever speed: the
    batch still checks in SQL (an endpoint added since is refused there; one removed is tried again
    once the entry expires, after ``TTL`` seconds). At most ``SIZE`` accounts, the oldest dropped."""

    TTL, SIZE = 60.0, 1024

    def __init__(self) -> None:
        self._until: dict[int, float] = {}  # account pk: when to try the batch again (monotonic)
        self._lock = threading.Lock()

    def remember(self, account_id: int) -> None:
        with self._lock:
            self._until.pop(account_id, None)  # re-inserted last: the dict's order is the age
            while len(self._until) >= self.SIZE:
                del self._until[next(iter(self._until))]
            self._until[account_id] = time.monotonic() + self.TTL

    def has(self, account_id: int) -> bool:
        until = self._until.get(account_id)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        with self._lock:  # expired: forget it (unless remembered again meanwhile)
            if self._until.get(account_id) == until:
                del self._until[account_id]
        return False

    def clear(self) -> None:
        with self._lock:
            self._until.clear()


endpoint_seen = _EndpointSeen()


def _params(task: GenerationTask, files: list[File], completed_at: datetime, event: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if task.price:
        params = pg_settle._joined_params(reference=task.public_id, actor="", now=completed_at, prefix=SETTLE)
        params[SETTLE + "lease_token"] = task.hold_token  # as the plain path's settle: this run's lease
    params.update(pg_event._joined_params(event, EVENT))
    for index, file in enumerate(files):
        for field in insert_fields(File):
            params[f"f{index}_{field.attname}"] = field.get_db_prep_save(field.pre_save(file, True), connection)
    params.update(pk=task.pk, running=Status.RUNNING, hold_token=task.hold_token, attempts=task.attempts)
    params.update(sequence=task.event_sequence, price=task.price, succeeded=Status.SUCCEEDED)
    params.update(completed_at=completed_at, error_code=task.error_code, error_message=task.error_message)
    return params


def _column(name: str) -> str:
    return connection.ops.quote_name(GenerationTask._meta.get_field(name).column)


@cache
def _batch(outputs: int, priced: bool) -> str:
    """``succeed_batched``'s query but for the flush: BEGIN, the locking read, the success, COMMIT."""
    meta, t = GenerationTask._meta, _column
    table, pk = connection.ops.quote_name(meta.db_table), connection.ops.quote_name(meta.pk.column)
    if priced:
        call = pg_settle._joined_call(SETTLE, account="c.account", amount="c.price")
        settled = f"SELECT c.*, x.outcome, x.hold_row FROM c, LATERAL {call} AS x"
        hold = f", {pg_settle._joined_columns('settled')}"
    else:
        settled, hold = "SELECT c.*, 'settled'::text AS outcome FROM c", ""
    inserts, linked, file_pks = _outputs(outputs)
    success = (
        f"UPDATE {table} AS g SET {t('status')} = %(succeeded)s, {t('charged')} = ok.price, {t('refunded')} = 0,"
        f" {t('completed_at')} = %(completed_at)s, {t('progress')} = 100, {t('error_code')} = %(error_code)s,"
        f" {t('error_message')} = %(error_message)s, {t('event_sequence')} = %(sequence)s + 1"
        f" FROM ok WHERE g.{pk} = ok.pk RETURNING 1"
    )
    # The locking read also says whether the account has no enabled endpoint (for ``endpoint_seen``).
    endpoint_free = pg_event._no_endpoint(f"g.{t('account')}")
    # Settled, the task's row and the event are one row each (the task's row is locked): else fail, never commit.
    check = (
        "(CASE WHEN settled.outcome = 'settled' AND ((SELECT count(*) FROM u) <> 1"
        " OR (SELECT count(*) FROM e) <> 1)"
        " THEN concat('rivya generation finish refused: rows not written, task ', settled.pk) END)::int"
    )
    return (
        f"{pg_batch.BEGIN} SELECT {endpoint_free} FROM {table} AS g WHERE g.{pk} = %(pk)s FOR UPDATE OF g;"
        f" WITH c AS ({_claimed()}), settled AS ({settled}),"
        f" ok AS (SELECT * FROM settled WHERE settled.outcome = 'settled'),{inserts}"
        f" u AS ({success}),{linked} e AS ({pg_event._joined_insert(EVENT, source='ok')})"
        f" SELECT settled.outcome, (SELECT * FROM e), {file_pks}{hold}, {check} FROM settled;"
        " COMMIT"
    )


def _claimed() -> str:
    """The task as this run's claim left it, of an account with no enabled endpoint: its pk, account, price."""
    meta, t = GenerationTask._meta, _column
    table, pk = connection.ops.quote_name(meta.db_table), connection.ops.quote_name(meta.pk.column)
    account = f"g.{t('account')}"
    return (
        f"SELECT g.{pk} AS pk, {account} AS account, g.{t('price')} AS price FROM {table} AS g"
        f" WHERE g.{pk} = %(pk)s AND g.{t('status')} = %(running)s AND g.{t('hold_token')} IS NOT DISTINCT FROM"
        f" %(hold_token)s AND g.{t('attempts')} = %(attempts)s AND NOT g.{t('cancel_requested')}"
        f" AND g.{t('event_sequence')} = %(sequence)s AND g.{t('price')} = %(price)s"
        f" AND {pg_event._no_endpoint(account)}"
    )


def _outputs(outputs: int) -> tuple[str, str, str]:
    """The outputs' INSERTs (a CTE each, one row for a row of ``ok``), their links' and their pks' array."""
    if not outputs:
        return "", "", "ARRAY[]::bigint[]"
    quote, file_meta = connection.ops.quote_name, File._meta
    through = GenerationTask.outputs.through._meta
    file_pk = quote(file_meta.pk.column)
    file_columns = ", ".join(quote(field.column) for field in insert_fields(File))
    inserts = "".join(
        f" f{i} AS (INSERT INTO {quote(file_meta.db_table)} ({file_columns})"
        f" SELECT {', '.join(f'%(f{i}_{field.attname})s' for field in insert_fields(File))} FROM ok"
        f" RETURNING {file_pk}),"
        for i in range(outputs)
    )
    links = " UNION ALL ".join(f"SELECT {file_pk} FROM f{i}" for i in range(outputs))
    task_column, file_column = (quote(through.get_field(name).column) for name in ("generationtask", "file"))
    linked = (
        f" o AS (INSERT INTO {quote(through.db_table)} ({task_column}, {file_column})"
        f" SELECT ok.pk, x.{file_pk} FROM ok, ({links}) AS x ORDER BY x.{file_pk}),"
    )
    file_pks = "ARRAY[" + ", ".join(f"(SELECT {file_pk} FROM f{i})" for i in range(outputs)) + "]"
    return inserts, linked, file_pks
