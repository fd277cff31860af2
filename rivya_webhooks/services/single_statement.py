"""PostgreSQL single-statement forms of two steps of a delivery attempt (issue 25).

Each replaces several round trips of the plain ORM path in ``delivery`` by one
statement with a data-modifying CTE. A statement is atomic by itself, so neither
needs a transaction. ``delivery`` uses them only on PostgreSQL
(``one_statement_available``), unless ``RIVYA_WEBHOOKS["SINGLE_STATEMENT"]`` is off;
``claim_many`` and ``record_successes`` do the same for a whole batch message
(``delivery_batch``; off with ``BATCH_STATEMENTS``). Tests compare them with the plain
path, so a Django upgrade that changes the query classes they build on fails there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.sql import InsertQuery, UpdateQuery

from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent
from rivya_webhooks.services._common import PENDING, SUCCEEDED


def one_statement_available() -> bool:
    return connection.vendor == "postgresql" and bool(webhooks_settings.SINGLE_STATEMENT)


def many_available() -> bool:
    """Whether a batch message's deliveries are claimed, and their successes recorded, in one
    statement each (``claim_many``, ``record_successes``)."""
    return one_statement_available() and bool(webhooks_settings.BATCH_STATEMENTS)


def _fields(model: type[Model], skip: tuple[str, ...] = ()) -> list[Any]:
    return [field for field in model._meta.concrete_fields if field.attname not in skip]


def _loaded_columns() -> tuple[list[tuple[type[Model], list[Any], str]], str]:
    """What a claim returns: the delivery's, its event's (without ``data``) and its endpoint's columns."""
    groups = [
        (WebhookDelivery, _fields(WebhookDelivery), "claimed"),
        (WebhookEvent, _fields(WebhookEvent, skip=("data",)), "ev"),
        (WebhookEndpoint, _fields(WebhookEndpoint), "ep"),
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(f"{alias}.{quote(f.column)}" for _, fields, alias in groups for f in fields)
    return groups, columns


def _tables() -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    return tuple(quote(model._meta.db_table) for model in (WebhookDelivery, WebhookEvent, WebhookEndpoint))


def _claimed_select(columns: str) -> str:
    _, event_table, endpoint_table = _tables()
    return (
        f"SELECT {columns} FROM claimed JOIN {event_table} AS ev ON ev.id = claimed.event_id "
        f"JOIN {endpoint_table} AS ep ON ep.id = claimed.endpoint_id"
    )


def _load(rows: list[Any], groups: list[tuple[type[Model], list[Any], str]]) -> list[WebhookDelivery]:
    """Deliveries built as the ORM builds loaded rows, with their event and endpoint attached
    (one endpoint instance per endpoint, shared by its deliveries)."""
    compiler = WebhookDelivery.objects.none().query.get_compiler(connection.alias)
    converters = compiler.get_converters([f.get_col(alias) for _, fields, alias in groups for f in fields])
    if converters:
        rows = list(compiler.apply_converters(rows, converters))
    deliveries, endpoints = [], {}
    for row in rows:
        instances, offset = [], 0
        for model, fields, _ in groups:
            values = row[offset : offset + len(fields)]
            instances.append(model.from_db(connection.alias, [f.attname for f in fields], values))
            offset += len(fields)
        delivery, event, endpoint = instances
        delivery.event, delivery.endpoint = event, endpoints.setdefault(endpoint.pk, endpoint)
        deliveries.append(delivery)
    return deliveries


def claim_and_load(*, delivery_id: int, now: datetime, lease_until: datetime, token: str) -> WebhookDelivery | None:
    """Claim a due pending delivery of an enabled endpoint and load it with its event and endpoint.

    The plain path's SELECT then conditional UPDATE, as one ``UPDATE ... RETURNING``
    joined to the event and the endpoint. Under READ COMMITTED a second claimer
    re-checks the WHERE on the locked row and finds it no longer due, so exactly one
    worker claims. The delivery comes back as claimed; what the outcome reads of it
    (retry count, trigger) the claim leaves alone. The event's ``data`` is deferred.
    """
    groups, columns = _loaded_columns()
    delivery_table, _, endpoint_table = _tables()
    sql = (
        f"WITH claimed AS (UPDATE {delivery_table} AS d SET next_attempt_at = %s, claim_token = %s, "
        f"dispatched_for = NULL FROM {endpoint_table} AS e WHERE d.id = %s AND d.state = %s "
        f"AND d.next_attempt_at <= %s AND e.id = d.endpoint_id AND e.enabled "
        f"RETURNING d.*) {_claimed_select(columns)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (lease_until, token, delivery_id, PENDING, now))
        row = cursor.fetchone()
    return _load([row], groups)[0] if row is not None else None


def claim_many(*, delivery_ids: list[int], now: datetime, lease_until: datetime, token: str) -> list[WebhookDelivery]:
    """``claim_and_load`` for a batch, in one statement; the claimed ones come back in
    ``delivery_ids`` order (those not due, gone or of a disabled endpoint are left out).

    The rows are locked in id order with ``SKIP LOCKED``: two claimers of overlapping
    batches neither deadlock nor wait, and a row another transaction holds is left to
    whoever holds it (another claimer, a redeliver or the sweeper, each of which queues
    its own message); the claim's WHERE is re-checked on the locked row, as in
    ``claim_and_load``, so a row is claimed once.
    """
    groups, columns = _loaded_columns()
    delivery_table, _, endpoint_table = _tables()
    sql = (
        f"WITH locked AS (SELECT d.id FROM {delivery_table} AS d JOIN {endpoint_table} AS e "
        f"ON e.id = d.endpoint_id WHERE d.id = ANY(%s) AND d.state = %s AND d.next_attempt_at <= %s "
        f"AND e.enabled ORDER BY d.id FOR UPDATE OF d SKIP LOCKED), "
        f"claimed AS (UPDATE {delivery_table} AS d SET next_attempt_at = %s, claim_token = %s, "
        f"dispatched_for = NULL FROM locked WHERE d.id = locked.id RETURNING d.*) {_claimed_select(columns)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (list(delivery_ids), PENDING, now, lease_until, token))
        rows = cursor.fetchall()
    order = {delivery_id: index for index, delivery_id in enumerate(delivery_ids)}
    return sorted(_load(rows, groups), key=lambda delivery: order[delivery.pk])


def record_success(
    *, delivery: WebhookDelivery, attempt: WebhookDeliveryAttempt, values: dict[str, Any]
) -> WebhookDeliveryAttempt:
    """The delivery's success update and the attempt's insert as one statement
    (``WITH done AS (UPDATE ...) INSERT ...``): one round trip instead of BEGIN, UPDATE, INSERT, COMMIT."""
    update = WebhookDelivery.objects.filter(pk=delivery.pk).query.chain(UpdateQuery)
    update.add_update_values(values)
    update_sql, update_params = update.get_compiler(connection.alias).as_sql()
    meta = WebhookDeliveryAttempt._meta
    insert = InsertQuery(WebhookDeliveryAttempt)
    insert.insert_values([f for f in meta.concrete_fields if not f.primary_key], [attempt])
    compiler = insert.get_compiler(connection.alias)
    compiler.returning_fields = [meta.pk]
    [(insert_sql, insert_params)] = compiler.as_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"WITH done AS ({update_sql}) {insert_sql}", (*update_params, *insert_params))
        attempt.pk = cursor.fetchone()[0]
    # The stored row, built as the ORM builds a loaded one (not by editing the instance's _state).
    names = [f.attname for f in meta.concrete_fields]
    return WebhookDeliveryAttempt.from_db(connection.alias, names, [getattr(attempt, name) for name in names])


def record_successes(*, successes: list[tuple[WebhookDeliveryAttempt, datetime]]) -> None:
    """``record_success`` for many deliveries in one statement: each (attempt, finished) pair
    sets its delivery as ``_success_values`` does (its own times and status) and inserts its
    attempt row: ``WITH done AS (UPDATE ... FROM unnest(...)) INSERT ... VALUES (...), ...``."""
    if not successes:
        return
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(WebhookDelivery._meta.get_field(name).column)

    update_sql = (
        f"UPDATE {quote(WebhookDelivery._meta.db_table)} AS d SET {column('state')} = %s, "
        f"{column('next_attempt_at')} = NULL, {column('succeeded_at')} = v.finished, {column('claim_token')} = '', "
        f"{column('dispatched_for')} = NULL, {column('next_trigger')} = %s, "
        f"{column('attempts_count')} = d.{column('attempts_count')} + 1, {column('last_attempt_at')} = v.started, "
        f"{column('last_status_code')} = v.status, {column('last_error')} = '' "
        f"FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::integer[]) "
        f"AS v(id, started, finished, status) WHERE d.id = v.id"
    )
    attempts = [attempt for attempt, _ in successes]
    update_params = (
        SUCCEEDED,
        WebhookDelivery.Trigger.SCHEDULED,
        [attempt.delivery_id for attempt in attempts],
        [attempt.created_at for attempt in attempts],
        [finished for _, finished in successes],
        [attempt.status_code for attempt in attempts],
    )
    insert = InsertQuery(WebhookDeliveryAttempt)
    insert.insert_values([f for f in WebhookDeliveryAttempt._meta.concrete_fields if not f.primary_key], attempts)
    [(insert_sql, insert_params)] = insert.get_compiler(connection.alias).as_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"WITH done AS ({update_sql}) {insert_sql}", (*update_params, *insert_params))
