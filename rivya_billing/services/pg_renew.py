"""The PostgreSQL fast path of ``credits_hold_renew``: one ``UPDATE … RETURNING`` of the hold.

The portable renew (``leases._renew_locked``) is a savepoint (or a transaction) around the
hold's row lock and its UPDATE: four round trips on every claim of a generation and every
heartbeat. The lease's rules fit one conditional UPDATE: the hold of the account's wallet
named by ``reference``, still pending, its lease not lapsed at ``now`` and, when the caller
renews its own claim, its token unchanged; a claim (no token) increments the token. The row
comes back whole, so the caller gets the hold as the plain path returns it.

An UPDATE that matches no row (no such hold, not pending, lease lapsed, token superseded)
writes nothing; the plain path then runs and decides, with its own errors and messages (a
refusal here is the rare path). Inside a caller's transaction the statement runs in a savepoint,
as the plain path does, so a database error there (a lock timeout, a deadlock) does not abort the
caller's transaction: ``credits_hold_renew`` is public. A generation's claim, progress write and
heartbeat, which let such an error end their transaction, call the private
``leases._hold_renew_joined``, which skips the savepoint (two round trips fewer).

A caller that claims the hold inside its own statement (a generation's claim,
``rivya_api.generations.pg_claim_hold``) sends this UPDATE for a claim as a data-modifying CTE of
it (``_claim_cte``, not public): the lease's rules stay here.

``RIVYA_BILLING["PG_HOLD_RENEW"] = False`` switches it off; ``tests/rivya_billing/test_pg_renew.py``
compares the two paths, refusals included, and races claims on PostgreSQL.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection, transaction

from rivya_billing.conf import billing_settings
from rivya_billing.models import Hold, HoldState, Wallet
from rivya_billing.services.ledger import _account_pk, _check_amount, _now
from rivya_core.rows import instance_from_row


def enabled() -> bool:
    """Whether renews on this connection take the one-statement path."""
    return connection.vendor == "postgresql" and billing_settings.PG_HOLD_RENEW


def renew(
    *, account: Any, reference: str, lease_token: int | None, now: datetime, expires: datetime, savepoint: bool = True
) -> Hold | None:
    """The renewed hold, or None when the statement matched no row (the plain path decides then).

    Inside a caller's transaction the statement runs in a savepoint unless ``savepoint`` is False
    (the private entry point of callers that let a database error end their transaction)."""
    params = {
        "account": _account_pk(account),
        "reference": reference,
        "token": lease_token,
        "now": now,
        "expires": expires,
        "pending": HoldState.PENDING,
    }
    guard = transaction.atomic() if savepoint and connection.in_atomic_block else contextlib.nullcontext()
    with guard, connection.cursor() as cursor:
        cursor.execute(_statement(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return instance_from_row(Hold, row)


@cache
def _statement() -> str:
    """The UPDATE, from the models' own table and column names; every field of the hold returned in order."""
    hold, wallet, quote = Hold._meta, Wallet._meta, connection.ops.quote_name

    def h(name: str) -> str:
        return f"h.{quote(hold.get_field(name).column)}"

    def w(name: str) -> str:
        return f"w.{quote(wallet.get_field(name).column)}"

    token = quote(hold.get_field("lease_token").column)
    returning = ", ".join(f"h.{quote(field.column)}" for field in hold.concrete_fields)
    return (
        f"UPDATE {quote(hold.db_table)} AS h"
        f" SET {quote(hold.get_field('lease_expires_at').column)} = %(expires)s,"
        f" {token} = h.{token} + CASE WHEN %(token)s::bigint IS NULL THEN 1 ELSE 0 END"
        f" FROM {quote(wallet.db_table)} AS w"
        f" WHERE {w('id')} = {h('wallet')} AND {w('account')} = %(account)s AND {h('reference')} = %(reference)s"
        f" AND {h('state')} = %(pending)s AND {h('lease_expires_at')} > %(now)s"
        f" AND (%(token)s::bigint IS NULL OR h.{token} = %(token)s::bigint)"
        f" RETURNING {returning}"
    )


def _claim_cte(
    *, source: str, account: str, reference: str, condition: str, lease_seconds: int, prefix: str
) -> tuple[str, dict[str, Any]]:
    """``renew``'s UPDATE for a claim (no token: the token goes up by one; the lease runs
    ``lease_seconds`` from now) and its parameters (named ``prefix`` + name), for a caller that
    sends it inside its own statement (a data-modifying CTE) and lets a database error end its
    transaction, as ``leases._hold_renew_joined``. Not public.

    ``source`` is a FROM item of the caller's statement (not named ``h`` or ``w``); ``account``,
    ``reference`` and ``condition`` are SQL expressions over it: the hold's account, its
    reference, and when to renew at all. It returns ``h.lease_token`` for each hold renewed; none
    (no such hold, not pending, lease lapsed) leaves the caller to call ``credits_hold_renew``,
    which decides and says why. "Now" is taken when this is called, as ``_renew`` takes it.
    """
    _check_amount(lease_seconds, param="lease_seconds")
    now = _now(None)
    params = {"now": now, "expires": now + timedelta(seconds=lease_seconds), "pending": HoldState.PENDING}
    sql = _claim_statement(source, account, reference, condition, prefix)
    return sql, {prefix + name: value for name, value in params.items()}


@cache
def _claim_statement(source: str, account: str, reference: str, condition: str, prefix: str) -> str:
    hold, wallet, quote = Hold._meta, Wallet._meta, connection.ops.quote_name

    def h(name: str) -> str:
        return f"h.{quote(hold.get_field(name).column)}"

    token = quote(hold.get_field("lease_token").column)
    return (
        f"UPDATE {quote(hold.db_table)} AS h"
        f" SET {quote(hold.get_field('lease_expires_at').column)} = %({prefix}expires)s, {token} = h.{token} + 1"
        f" FROM {quote(wallet.db_table)} AS w, {source}"
        f" WHERE w.{quote(wallet.get_field('id').column)} = {h('wallet')}"
        f" AND w.{quote(wallet.get_field('account').column)} = {account}"
        f" AND {h('reference')} = {reference} AND ({condition})"
        f" AND {h('state')} = %({prefix}pending)s AND {h('lease_expires_at')} > %({prefix}now)s"
        f" RETURNING h.{token}"
    )
