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
from typing import Any

from django.db import connection
from django.db.models.signals import post_save, pre_save

from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.models import WebhookEndpoint, WebhookEvent


def enabled() -> bool:
    if connection.vendor != "postgresql" or not webhooks_settings.EVENT_INSERT_SQL:
        return False
    return not (pre_save.has_listeners(WebhookEvent) or post_save.has_listeners(WebhookEvent))


def insert(event: WebhookEvent) -> bool:
    """Insert ``event``'s row (its pk set, as after ``save``); True when its account has an enabled endpoint."""
    fields = _fields()
    values = [field.get_db_prep_save(field.pre_save(event, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(_statement(), [*values, event.account_id])
        pk, any_endpoint = cursor.fetchone()
    event.pk = pk
    event._state.adding, event._state.db = False, connection.alias
    return bool(any_endpoint)


def _fields() -> list[Any]:
    """The columns the ORM's INSERT writes: every concrete field but the auto primary key."""
    meta = WebhookEvent._meta
    return [field for field in meta.concrete_fields if field is not meta.auto_field]


@cache
def _statement() -> str:
    quote = connection.ops.quote_name
    meta, endpoint_meta = WebhookEvent._meta, WebhookEndpoint._meta
    columns = ", ".join(quote(field.column) for field in _fields())
    placeholders = ", ".join("%s" for _ in _fields())
    endpoint_account = quote(endpoint_meta.get_field("account").column)
    endpoint_enabled = quote(endpoint_meta.get_field("enabled").column)
    return (
        f"WITH e AS (INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})"
        f" RETURNING {quote(meta.pk.column)})"
        f" SELECT e.{quote(meta.pk.column)}, EXISTS (SELECT 1 FROM {quote(endpoint_meta.db_table)}"
        f" WHERE {endpoint_account} = %s AND {endpoint_enabled}) FROM e"
    )
