"""PostgreSQL single-statement forms of two steps of a delivery attempt (issue 25).

Each replaces several round trips of the plain ORM path in ``delivery`` by one
statement with a data-modifying CTE. A statement is atomic by itself, so neither
needs a transaction. ``delivery`` uses them only on PostgreSQL
(``one_statement_available``), unless ``RIVYA_WEBHOOKS["SINGLE_STATEMENT"]`` is off;
tests compare them with the plain path, so a Django upgrade that changes the query
classes they build on fails there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.sql import InsertQuery, UpdateQuery

from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent
from rivya_webhooks.services._common import PENDING


def one_statement_available() -> bool:
    return connection.vendor == "postgresql" and bool(webhooks_settings.SINGLE_STATEMENT)


def _fields(model: type[Model], skip: tuple[str, ...] = ()) -> list[Any]:
    return [field for field in model._meta.concrete_fields if field.attname not in skip]


def claim_and_load(*, delivery_id: int, now: datetime, lease_until: datetime, token: str) -> WebhookDelivery | None:
    """Claim a due pending delivery of an enabled endpoint and load it with its event and endpoint.

    The plain path's SELECT then conditional UPDATE, as one ``UPDATE ... RETURNING``
    joined to the event and the endpoint. Under READ COMMITTED a second claimer
    re-checks the WHERE on the locked row and finds it no longer due, so exactly one
    worker claims. The delivery comes back as claimed; what the outcome reads of it
    (retry count, trigger) the claim leaves alone. The event's ``data`` is deferred.
    """
    groups = [
        (WebhookDelivery, _fields(WebhookDelivery), "claimed"),
        (WebhookEvent, _fields(WebhookEvent, skip=("data",)), "ev"),
        (WebhookEndpoint, _fields(WebhookEndpoint), "ep"),
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(f"{alias}.{quote(f.column)}" for _, fields, alias in groups for f in fields)
    delivery_table, event_table = quote(WebhookDelivery._meta.db_table), quote(WebhookEvent._meta.db_table)
    endpoint_table = quote(WebhookEndpoint._meta.db_table)
    sql = (
        f"WITH claimed AS (UPDATE {delivery_table} AS d SET next_attempt_at = %s, claim_token = %s, "
        f"dispatched_for = NULL FROM {endpoint_table} AS e WHERE d.id = %s AND d.state = %s "
        f"AND d.next_attempt_at <= %s AND e.id = d.endpoint_id AND e.enabled "
        f"RETURNING d.*) SELECT {columns} FROM claimed "
        f"JOIN {event_table} AS ev ON ev.id = claimed.event_id "
        f"JOIN {endpoint_table} AS ep ON ep.id = claimed.endpoint_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (lease_until, token, delivery_id, PENDING, now))
        row = cursor.fetchone()
    if row is None:
        return None
    compiler = WebhookDelivery.objects.none().query.get_compiler(connection.alias)
    converters = compiler.get_converters([f.get_col(alias) for _, fields, alias in groups for f in fields])
    if converters:
        row = next(iter(compiler.apply_converters([row], converters)))
    instances, offset = [], 0
    for model, fields, _ in groups:
        values = row[offset : offset + len(fields)]
        instances.append(model.from_db(connection.alias, [f.attname for f in fields], values))
        offset += len(fields)
    delivery, event, endpoint = instances
    delivery.event, delivery.endpoint = event, endpoint
    return delivery


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
