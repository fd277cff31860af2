"""The PostgreSQL fast path of publishing an event: its row and the endpoint probe in one statement.

The plain path (``publishing._publish``) inserts the event with ``WebhookEvent.objects.create`` (an
ORM INSERT compiled on every event) and then lists the account's enabled endpoints (a second
query, compiled too) to find those subscribed to the event's type. Most events (every
generation's finish) belong to accounts with no endpoint at all. Here one statement, built once
from the model's columns, inserts the row and says whether the account has any enabled endpoint
(``EXISTS``, read in the same statement); only when it has does the caller list them as the
plain path does, so a delivery is never skipped: an account with endpoints gets the same
deliveries, one without gets none, as before.

The row's values go through each field's ``pre_save`` and ``get_db_prep_save``, as in the ORM's
INSERT. It sends no ``pre_save``/``post_save`` signal, so while a receiver (a host's, say) is
connected for ``WebhookEvent`` publishing takes the plain path, which sends them.
``RIVYA_WEBHOOKS["EVENT_INSERT_SQL"] = False`` switches it off (SQLite always takes the plain
path); ``tests/rivya_webhooks/test_pg_event.py`` compares the two paths.
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from rivya_core.rows import insert_fields, mark_inserted, saves_heard
from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.models import WebhookEndpoint, WebhookEvent


def enabled() -> bool:
    if connection.vendor != "postgresql" or not webhooks_settings.EVENT_INSERT_SQL:
        return False
    return not saves_heard(WebhookEvent)


def insert(event: WebhookEvent) -> bool:
    """Insert ``event``'s row (its pk set, as after ``save``); True when its account has an enabled endpoint."""
    fields = insert_fields(WebhookEvent)
    values = [field.get_db_prep_save(field.pre_save(event, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(_statement(), [*values, event.account_id])
        pk, any_endpoint = cursor.fetchone()
    mark_inserted(event, pk)
    return bool(any_endpoint)


@cache
def _statement() -> str:
    quote = connection.ops.quote_name
    meta, endpoint_meta = WebhookEvent._meta, WebhookEndpoint._meta
    columns = ", ".join(quote(field.column) for field in insert_fields(WebhookEvent))
    placeholders = ", ".join("%s" for _ in insert_fields(WebhookEvent))
    endpoint_account = quote(endpoint_meta.get_field("account").column)
    endpoint_enabled = quote(endpoint_meta.get_field("enabled").column)
    return (
        f"WITH e AS (INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})"
        f" RETURNING {quote(meta.pk.column)})"
        f" SELECT e.{quote(meta.pk.column)}, EXISTS (SELECT 1 FROM {quote(endpoint_meta.db_table)}"
        f" WHERE {endpoint_account} = %s AND {endpoint_enabled}) FROM e"
    )


def _joined_insert(prefix: str, *, source: str) -> str:
    """The event's INSERT for a caller that sends it among its own statements (a generation's finish
    sent as one query, ``rivya_api.generations.pg_finish``); not public. One row per row of ``source``
    (the caller's SQL: a CTE of one row or none), its values the parameters ``_joined_params`` names;
    it returns the row's pk. The caller lists no endpoint: it sends only for an account with no enabled
    endpoint (``_no_endpoint``), so there is no delivery to create."""
    quote, meta = connection.ops.quote_name, WebhookEvent._meta
    columns = ", ".join(quote(field.column) for field in insert_fields(WebhookEvent))
    values = ", ".join(f"%({prefix}{field.attname})s" for field in insert_fields(WebhookEvent))
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    return f"INSERT INTO {table} ({columns}) SELECT {values} FROM {source} RETURNING {pk}"


def _joined_params(event: WebhookEvent, prefix: str) -> dict[str, object]:
    """``_joined_insert``'s parameters: the values of ``event`` (unsaved), as ``insert`` sends them."""
    return {
        prefix + field.attname: field.get_db_prep_save(field.pre_save(event, True), connection)
        for field in insert_fields(WebhookEvent)
    }


def _no_endpoint(account: str) -> str:
    """SQL true when the account ``account`` (the caller's SQL expression) has no enabled endpoint."""
    quote = connection.ops.quote_name
    meta = WebhookEndpoint._meta
    return (
        f"NOT EXISTS (SELECT 1 FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('account').column)} = {account}"
        f" AND {quote(meta.get_field('enabled').column)})"
    )
