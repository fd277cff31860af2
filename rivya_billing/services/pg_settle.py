"""The PostgreSQL fast path of ``credits_settle``: one call of a PL/pgSQL function.

The portable settle (``holds._settle_locked``) is a savepoint (or a transaction)
around the hold's row lock, the early-commit setting, the wallet's row lock, the
wallet UPDATE, the ledger INSERT, the probe of expiring grants and the hold
UPDATE: eight or more round trips, each paid in Python and psycopg CPU, and the
last four under the wallet's row lock. Here it is one statement: the function
``rivya_billing_settle`` of ``pg_settle.sql`` (a function so that PostgreSQL
plans its statements once per connection, as ``pg_reserve``), which takes the
same locks in the same order and writes the same rows.

A refusal writes nothing and returns the hold as locked; the refusal itself
(conflict, not pending, stale) is decided again in Python from that hold, by the
plain path's own code (``ledger._settle_repeat``), so its errors and messages are
the same. Outside a transaction the statement is its own (autocommit). Inside a
caller's transaction it runs in a savepoint, as the plain path's ``atomic`` does:
the function can still fail in the database (a lock or statement timeout, a
deadlock), which must not abort the caller's transaction, and a refusal raises
inside the savepoint so that its rollback lets go of the hold's row lock. A chat
turn's end and a generation's finish, which let such an error end their whole
transaction, call ``holds._settle_joined`` instead: no savepoint (two round trips
fewer); after a refusal their transaction keeps the hold's row lock until it ends. What the
plain path does in Python after its writes is done here too: the WAL flush of early
lock release first (``durability``), then the lines' metrics once committed.

``RIVYA_BILLING["PG_SETTLE"] = False`` switches it off, joined settles too (every
database then takes the portable path, as does an ``OVERRUN_POLICY`` the plain path refuses).
``tests/rivya_billing/test_pg_settle.py`` compares the two paths row by row,
checks that the installed function is this file's SQL, and that its INSERT names
every column of the ledger.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from rivya_billing.checks import OVERRUN_POLICIES
from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import LedgerConcurrencyError
from rivya_billing.models import Hold, new_entry_id
from rivya_billing.services.durability import early_release, flush_after_commit
from rivya_billing.services.ledger import (
    _account_pk,
    _actor,
    _check_reference,
    _hold_not_found,
    _observe,
    _settle_lines,
    _settle_repeat,
)

# Installed by the migrations that load it (0010 first; see there for how a change is made).
SQL_FILE = Path(__file__).with_name("pg_settle.sql")

CALL = """
    SELECT s.outcome, {columns}
      FROM rivya_billing_settle(%(account)s, %(reference)s, %(amount)s, %(actor)s, %(lease_token)s, %(now)s,
                                %(commit_early)s, %(policy)s, %(entry_ids)s) AS s
"""

# The most lines a settle posts (settle, release, overrun, waive): one public id each.
MAX_LINES = 4


def enabled() -> bool:
    """Whether settles on this connection take the one-statement path."""
    return (
        connection.vendor == "postgresql"
        and billing_settings.PG_SETTLE
        # The plain path raises ImproperlyConfigured for another policy, when it needs one.
        and billing_settings.OVERRUN_POLICY in OVERRUN_POLICIES
    )


def settle(
    *,
    account: Any,
    reference: str,
    amount: int,
    actor: str,
    lease_token: int | None,
    now: datetime,
    savepoint: bool = True,
) -> Hold:
    """``credits_settle`` in one statement (its arguments checked already); same results as the portable path.

    ``savepoint=False`` (``holds._settle_joined``): no savepoint in a caller's transaction; a database
    error then aborts that transaction, and a refusal keeps the hold's row lock until it ends.
    """
    params = {
        "account": _account_pk(account),
        "reference": reference,
        "amount": amount,
        "actor": _actor(actor) if actor else None,  # None: the hold's actor (``actor or hold.actor``)
        "lease_token": lease_token,
        "now": now,
        "commit_early": early_release(),
        "policy": billing_settings.OVERRUN_POLICY,
        "entry_ids": [new_entry_id() for _ in range(MAX_LINES)],
    }
    # One round trip outside a transaction; inside one, a savepoint around it (see above).
    inside = savepoint and connection.in_atomic_block
    with transaction.atomic() if inside else contextlib.nullcontext():
        outcome, hold = _call(params)
        if outcome == "refused":  # raised in the savepoint: its rollback releases the hold
            if _settle_repeat(hold, amount=amount, lease_token=lease_token, now=now):
                return hold
            raise LedgerConcurrencyError(f"Hold {hold.public_id} was refused a settle the plain path would make.")
    if params["commit_early"]:
        flush_after_commit()
    hold.resolved_at = now  # the caller's datetime, as the plain path sets it
    lines = _settle_lines(hold, captured=hold.captured, overrun=hold.overrun, waived=hold.waived)
    # Outside a transaction the statement has committed and this runs at once.
    transaction.on_commit(lambda: _observe(lines), robust=True)
    return hold


def _joined_call(prefix: str, *, account: str, amount: str) -> str:
    """The settle function's call for a caller that sends it among its own statements and ends their
    transaction itself (a chat turn's finish and a generation's success sent as one query,
    ``rivya_api.chat.pg_finish``, ``rivya_api.generations.pg_finish``); not public, as
    ``holds._settle_joined``. ``account`` and ``amount`` are the caller's SQL expressions (read from
    rows it has locked); the other arguments are parameters named ``prefix`` + name
    (``_joined_params``). It returns ``outcome`` and ``hold_row``; only ``settled`` wrote anything
    (a refusal wrote nothing: the caller leaves it to ``credits_settle`` to decide and say)."""
    names = "reference", "actor", "lease_token", "now", "commit_early", "policy", "entry_ids"
    arguments = ", ".join(f"%({prefix}{name})s" for name in names)
    first, rest = arguments.split(", ", 1)
    return f"rivya_billing_settle({account}, {first}, {amount}, {rest})"


def _joined_columns(alias: str) -> str:
    """Every field of the hold in ``alias.hold_row``, in the model's order (``_joined_hold``)."""
    return ", ".join(f'({alias}.hold_row)."{field.column}"' for field in Hold._meta.concrete_fields)


def _joined_params(*, reference: str, actor: str, now: datetime, prefix: str) -> dict[str, Any]:
    """``_joined_call``'s parameters, checked as ``credits_settle`` checks its arguments (no lease token)."""
    _check_reference(reference)
    params = {
        "reference": reference,
        "actor": _actor(actor) if actor else None,
        "lease_token": None,
        "now": now,
        "commit_early": early_release(),
        "policy": billing_settings.OVERRUN_POLICY,
        "entry_ids": [new_entry_id() for _ in range(MAX_LINES)],
    }
    return {prefix + name: value for name, value in params.items()}


def _joined_hold(params: dict[str, Any], values: Any, prefix: str) -> Hold:
    """The hold ``_joined_call`` settled (``values``: ``_joined_columns``), its caller's transaction
    committed and flushed (``durability.FLUSH`` when ``commit_early``); its lines' metrics observed."""
    hold = Hold.from_db(connection.alias, [field.attname for field in Hold._meta.concrete_fields], values)
    hold.resolved_at = params[prefix + "now"]  # the caller's datetime, as the plain path sets it
    lines = _settle_lines(hold, captured=hold.captured, overrun=hold.overrun, waived=hold.waived)
    transaction.on_commit(lambda: _observe(lines), robust=True)  # outside a transaction: at once
    return hold


def _call(params: dict[str, Any]) -> tuple[str, Hold]:
    """The function's outcome and hold; ``HoldNotFoundError`` when there is no such hold."""
    with connection.cursor() as cursor:
        cursor.execute(_statement(), params)
        outcome, *values = cursor.fetchone()
    if outcome == "missing":
        raise _hold_not_found(params["reference"])
    # Every field, in the model's order (``_statement``): as the ORM would load it, with no query.
    return outcome, Hold.from_db(connection.alias, [field.attname for field in Hold._meta.concrete_fields], values)


@cache
def _statement() -> str:
    """``CALL`` selecting every field of the hold by its column: one the function's row lacks fails loudly."""
    return CALL.format(columns=", ".join(f'(s.hold_row)."{field.column}"' for field in Hold._meta.concrete_fields))
