"""The SQLite fast path of a reservation's and a settle's rows: statements built once, none compiled per call.

The embedded configuration (SQLite) runs the portable reservation and settle (``holds._reserve_rows``,
``holds._settle_rows``) in their caller's transaction (or their own): ``BEGIN IMMEDIATE`` already
holds SQLite's write lock, so what they read cannot change before they write, and they take no row
locks. Only their statements differ here, the transaction, its savepoint (or none, joined) and its
callbacks are the plain path's:

* reserve: one read (the wallet, and the hold of the same reference if there is one: a repeat), the
  refusal for want of credits, then the hold's INSERT, the guarded wallet UPDATE and the ledger
  INSERT (the plain path: the repeat check, the wallet read, ``Hold.objects.create``, the UPDATE
  and ``bulk_create``, each compiled per call);
* settle: one read (the hold and its wallet, as the plain path's ``select_related``), the plain
  path's own refusals (``ledger._settle_repeat``), split (``holds._settle_split``) and lines
  (``ledger._settle_lines``), then the guarded wallet UPDATE, the ledger INSERT, the expiring
  grants' draw and the hold's UPDATE (re-checking ``pending``).

The entries are ``ledger._entries``'s, the plain path's own; every value goes through its field's
``get_db_prep_save`` (after ``pre_save``, as the ORM's INSERT), rows are loaded with the ORM's
converters (``rivya_core.rows``), so the stored text and the returned objects are the plain path's.
Nothing is written before the last refusal. ``durability`` does nothing on SQLite (``early_release``
is PostgreSQL's), and the lines' metrics are observed once committed, as ``ledger._post`` does.

A reservation with a spend limit, and the settle of a hold counted against one, take the plain path
(its limit row's window and counts; the settle's read is then made again there). The hold's INSERT
sends no ``pre_save``/``post_save`` (the plain path's ``Hold.objects.create`` does), so while a
receiver is connected for ``Hold`` (a host's) reservations take the plain path, as ``pg_event``. Release, expiry and
renewal are not here (not on a chat turn's way).
``RIVYA_BILLING["SQLITE_HOLDS"] = False`` switches it off; ``tests/rivya_billing/test_sqlite_holds.py``
compares it with the plain path row by row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection, transaction

from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import LedgerConcurrencyError
from rivya_billing.models import CreditGrant, EntryType, Hold, HoldState, LedgerEntry, Wallet
from rivya_billing.services.ledger import (
    _account_pk,
    _actor,
    _check_covered,
    _entries,
    _hold_not_found,
    _Line,
    _observe,
    _settle_lines,
    _settle_repeat,
)
from rivya_core.rows import insert_fields, instance_from_row, mark_inserted, saves_heard

logger = logging.getLogger(__name__)

# The most lines one call posts (a settle: settle, release, overrun, waive); one INSERT built per count.
MAX_LINES = 4


def enabled() -> bool:
    """Whether reservations and settles on this connection take this path (the plain path's transaction)."""
    return connection.vendor == "sqlite" and bool(billing_settings.SQLITE_HOLDS) and _built()


def reserves() -> bool:
    """Whether a reservation (without a spend limit) takes this path: ``enabled`` and no receiver of the
    hold's ``pre_save``/``post_save``, which the plain path's ``Hold.objects.create`` sends and this one not."""
    return enabled() and not saves_heard(Hold)


@cache
def _built() -> bool:
    """Whether the statements can be built for these models and this SQLite (else the plain path, said once)."""
    try:
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 35):  # RETURNING
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} has no RETURNING")
        _statements()
        for count in range(1, MAX_LINES + 1):
            _insert_entries(count)
    except Exception:
        logger.exception("Billing's SQLite hold statements cannot be built; the plain path is used")
        return False
    return True


def reserve_rows(*, account: Any, amount: int, reference: str, actor: str, now: datetime, expires: datetime) -> Hold:
    """``holds._reserve_rows`` without a spend limit: a repeat, the refusal, then the hold, wallet and entry."""
    with connection.cursor() as cursor:
        cursor.execute(_statements()["reserve_read"], [reference, _account_value(account)])
        row = cursor.fetchone()
    wallet = hold = None
    if row is not None:
        wallet, hold = _wallet_and_hold(row)
    if hold is not None:
        return hold  # a repeat: the existing hold, whatever its state
    _check_covered(wallet, amount)
    hold = Hold(
        wallet=wallet,
        reference=reference,
        amount=amount,
        lease_expires_at=expires,
        actor=actor,
        created_at=now,
        spend_limit_id=None,
        spend_window_start=None,
    )
    with connection.cursor() as cursor:
        cursor.execute(_statements()["hold_insert"], _insert_values(hold))
        mark_inserted(hold, cursor.fetchone()[0])
    _post(wallet=wallet, lines=[_Line(EntryType.RESERVE, amount, reference, hold.pk)], actor=actor, now=now)
    hold.spend_limit_state = None
    return hold


def settle_rows(
    *, account: Any, reference: str, amount: int, actor: str, lease_token: int | None, now: datetime
) -> Hold | None:
    """``holds._settle_rows`` for a hold without a spend limit; None (nothing written) for one with it."""
    from rivya_billing.services.holds import _settle_split  # holds imports this module

    with connection.cursor() as cursor:
        cursor.execute(_statements()["settle_read"], [_account_value(account), reference])
        row = cursor.fetchone()
    if row is None:
        raise _hold_not_found(reference)
    wallet, hold = _wallet_and_hold(row)
    if hold.spend_limit_id is not None:
        return None  # the plain path: the limit's window and counts
    hold.wallet = wallet
    if _settle_repeat(hold, amount=amount, lease_token=lease_token, now=now):
        return hold
    captured, _, overrun, waived = _settle_split(hold, amount=amount, available=wallet.available)
    lines = _settle_lines(hold, captured=captured, overrun=overrun, waived=waived)
    _post(wallet=wallet, lines=lines, actor=_actor(actor or hold.actor), now=now)
    settled = {"usage": amount, "captured": captured, "overrun": overrun, "waived": waived}
    fields = {"state": HoldState.SETTLED, "resolved_at": now, **settled}
    values = [Hold._meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]
    with connection.cursor() as cursor:
        cursor.execute(_resolve(tuple(fields)), [*values, hold.pk, HoldState.PENDING])
        if cursor.rowcount != 1:
            raise LedgerConcurrencyError(f"Hold {hold.public_id} changed under its row lock.")
    for name, value in fields.items():
        setattr(hold, name, value)
    return hold


def _post(*, wallet: Wallet, lines: Sequence[_Line], actor: str, now: datetime) -> None:
    """``ledger._post``: the guarded wallet UPDATE, the entries' INSERT, the grants' draw, the metrics on commit."""
    entries, balance, held, sequence, spent = _entries(wallet=wallet, lines=lines, actor=actor, now=now)
    updated_at = Wallet._meta.get_field("updated_at").get_db_prep_save(now, connection)
    values = [balance - wallet.balance, held - wallet.held, sequence, updated_at, wallet.pk, wallet.last_sequence]
    with connection.cursor() as cursor:
        cursor.execute(_statements()["wallet_update"], values)
        if cursor.rowcount != 1:
            raise LedgerConcurrencyError(f"Wallet {wallet.pk} changed under its row lock; nothing was posted.")
        cursor.execute(_insert_entries(len(entries)), [v for entry in entries for v in _insert_values(entry)])
        if spent:
            _draw_grants(cursor, wallet_id=wallet.pk, spent=spent)
    wallet.balance, wallet.held, wallet.last_sequence, wallet.updated_at = balance, held, sequence, now
    transaction.on_commit(lambda: _observe(lines), robust=True)


def _draw_grants(cursor: Any, *, wallet_id: int, spent: int) -> None:
    """``ledger._draw_grants``: take ``spent`` from the wallet's expiring grants, soonest expiry first."""
    cursor.execute(_statements()["grants_read"], [wallet_id])
    for pk, remaining in cursor.fetchall():
        take = min(spent, remaining)
        cursor.execute(_statements()["grant_draw"], [take, take, pk])
        spent -= take
        if not spent:
            break


def _account_value(account: Any) -> Any:
    """The wallet's ``account`` column value of ``account`` (an instance or its pk), as the ORM's lookup
    sends it (``_account_pk`` refuses an instance of another model, as that lookup does)."""
    return Wallet._meta.get_field("account").get_db_prep_value(_account_pk(account), connection)


def _insert_values(instance: Any) -> list[Any]:
    """The values the ORM's INSERT sends for ``instance`` (``pre_save``, then ``get_db_prep_save``)."""
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in insert_fields(type(instance))
    ]


def _wallet_and_hold(row: Sequence[Any]) -> tuple[Wallet, Hold | None]:
    """The wallet and the hold (None: no hold joined) of a read's row, as the ORM would load them."""
    count = len(Wallet._meta.concrete_fields)
    wallet = instance_from_row(Wallet, row[:count])
    values = row[count:]
    hold = instance_from_row(Hold, values) if values[0] is not None else None
    return wallet, hold


@cache
def _statements() -> dict[str, str]:
    """Every statement but the per-count ones, from the models' own table and column names."""
    quote = connection.ops.quote_name
    wallet_meta, hold_meta, grant_meta = Wallet._meta, Hold._meta, CreditGrant._meta

    def column(meta: Any, name: str) -> str:
        return quote(meta.get_field(name).column)

    wallets, holds, grants = (quote(m.db_table) for m in (wallet_meta, hold_meta, grant_meta))
    selected = ", ".join(
        [f"w.{quote(f.column)}" for f in wallet_meta.concrete_fields]
        + [f"h.{quote(f.column)}" for f in hold_meta.concrete_fields]
    )
    inserted = insert_fields(Hold)
    w_pk, h_wallet, h_reference = (
        quote(wallet_meta.pk.column),
        column(hold_meta, "wallet"),
        column(hold_meta, "reference"),
    )
    balance, held, sequence = (column(wallet_meta, n) for n in ("balance", "held", "last_sequence"))
    remaining, drawn, g_pk = column(grant_meta, "remaining"), column(grant_meta, "drawn"), quote(grant_meta.pk.column)
    return {
        "reserve_read": (
            f"SELECT {selected} FROM {wallets} w LEFT JOIN {holds} h"
            f" ON h.{h_wallet} = w.{w_pk} AND h.{h_reference} = %s WHERE w.{column(wallet_meta, 'account')} = %s"
        ),
        "settle_read": (
            f"SELECT {selected} FROM {holds} h INNER JOIN {wallets} w ON w.{w_pk} = h.{h_wallet}"
            f" WHERE w.{column(wallet_meta, 'account')} = %s AND h.{h_reference} = %s"
        ),
        "hold_insert": (
            f"INSERT INTO {holds} ({', '.join(quote(f.column) for f in inserted)})"
            f" VALUES ({', '.join(['%s'] * len(inserted))}) RETURNING {quote(hold_meta.pk.column)}"
        ),
        "wallet_update": (
            f"UPDATE {wallets} SET {balance} = ({balance} + %s), {held} = ({held} + %s), {sequence} = %s,"
            f" {column(wallet_meta, 'updated_at')} = %s WHERE {w_pk} = %s AND {sequence} = %s"
        ),
        "grants_read": (
            f"SELECT {g_pk}, {remaining} FROM {grants} WHERE {column(grant_meta, 'wallet')} = %s AND {remaining} > 0"
            f" ORDER BY {column(grant_meta, 'expires_at')} ASC, {g_pk} ASC"
        ),
        "grant_draw": (
            f"UPDATE {grants} SET {remaining} = ({remaining} - %s), {drawn} = ({drawn} + %s) WHERE {g_pk} = %s"
        ),
    }


@cache
def _insert_entries(count: int) -> str:
    """The ledger's INSERT of ``count`` entries."""
    quote, fields = connection.ops.quote_name, insert_fields(LedgerEntry)
    row = f"({', '.join(['%s'] * len(fields))})"
    columns = ", ".join(quote(f.column) for f in fields)
    return f"INSERT INTO {quote(LedgerEntry._meta.db_table)} ({columns}) VALUES {', '.join([row] * count)}"


@cache
def _resolve(fields: tuple[str, ...]) -> str:
    """The hold's UPDATE to its final state, re-checking ``pending``."""
    quote, meta = connection.ops.quote_name, Hold._meta
    sets = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in fields)
    state = quote(meta.get_field("state").column)
    return f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s AND {state} = %s"
