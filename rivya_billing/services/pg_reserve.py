"""The PostgreSQL fast path of ``credits_reserve``: one call of a PL/pgSQL function.

The portable reservation (``holds._reserve_locked``) takes the wallet's row lock
and then sends three more statements; on a hot wallet every round trip is spent
under that lock. Here the whole reservation is one statement: the function
``rivya_billing_reserve`` of ``pg_reserve.sql`` (a function so that PostgreSQL
plans it once per connection; migrations 0004 and 0007 explain the order of its
parts: spend limit guard, hold INSERT, guarded wallet UPDATE, ledger INSERT).

A caller that ends the transaction itself (a chat turn's commit, ``rivya_api.chat.pg_commit``)
sends the same statement among its own (``_joined_call``, ``_joined_params``, ``_committed_hold``, not public).

``RIVYA_BILLING["PG_RESERVE"] = False`` switches it off (every database then
takes the portable path). ``tests/rivya_billing/test_pg_reserve.py`` compares the
two paths row by row, checks that the installed function is this file's SQL, and
that its column lists name every column of the models.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import InsufficientCreditsError, SpendLimitError
from rivya_billing.metrics import ledger_operation_observe
from rivya_billing.models import EntryType, Hold, HoldState, Wallet, new_entry_id, new_hold_id
from rivya_billing.services.durability import early_release, flush_after_commit
from rivya_billing.services.ledger import _account_pk, _reserve_arguments
from rivya_billing.services.limits import spend_limit_exceeded_error, spend_limit_get
from rivya_core.rows import saves_heard

# Installed by the migrations that load it (0009 first; see there for how a change is made).
SQL_FILE = Path(__file__).with_name("pg_reserve.sql")

CALL = """
    SELECT reserved_hold_id, reserved_wallet_id
           , limit_used, limit_credits, limit_window_start, limit_refused
      FROM rivya_billing_reserve(%(account)s, %(amount)s, %(reference)s, %(hold_id)s, %(entry_id)s,
                                 %(actor)s, %(now)s, %(expires)s, %(commit_early)s, %(spend_limit)s)
"""

NOT_NULL_VIOLATION = "23502"  # the statement's "not enough credits"
UNIQUE_VIOLATION = "23505"  # the statement's "this reference has a hold already"


def enabled() -> bool:
    """Whether reservations on this connection take the one-statement path (not while a receiver
    listens to the hold's saves: its INSERT sends no ``pre_save``/``post_save``, the plain path's does)."""
    return connection.vendor == "postgresql" and billing_settings.PG_RESERVE and not saves_heard(Hold)


def reserve(
    *,
    account: Any,
    amount: int,
    reference: str,
    actor: str,
    now: datetime,
    expires: datetime,
    spend_limit: int | None,
    savepoint: bool = True,
) -> Hold:
    """``credits_reserve`` in one statement (its arguments checked already); same results as the portable path.

    ``savepoint=False`` (``holds._reserve_joined``): no savepoint in a caller's transaction; a
    database error, the refusal for want of credits included, then aborts that transaction, so
    nothing more is read in it: that refusal's ``available`` is None, a repeated reference raises.
    """
    params = _params(account, amount, reference, actor, now, expires, spend_limit)
    try:
        row = _call(params, savepoint)
    except IntegrityError as error:
        if not savepoint and connection.in_atomic_block:  # the caller's transaction is aborted
            if _sqlstate(error) != NOT_NULL_VIOLATION:
                raise
            message = f"Cannot reserve {amount} credits."
            raise InsufficientCreditsError(message, requested=amount, available=None) from None  # type: ignore[arg-type]
        if _sqlstate(error) == UNIQUE_VIOLATION and (existing := _existing(account, reference)) is not None:
            return existing
        if _sqlstate(error) != NOT_NULL_VIOLATION:
            raise
        row = None
    if row is not None and row[0] is not None:
        return _reserved(params, row)
    if row is not None and row[5]:  # the limit refused: nothing was written
        if (existing := _existing(account, reference)) is not None:
            return existing  # a repeat of a reservation that was made
        _refuse_for_limit(spend_limit, amount=amount, now=now)
    # Not enough available, or no wallet at all.
    available = Wallet.objects.filter(account=account).values_list(F("balance") - F("held"), flat=True).first() or 0
    raise InsufficientCreditsError(
        f"Cannot reserve {amount} credits: {available} available.", requested=amount, available=available
    )


def _call(params: dict[str, Any], savepoint: bool = True) -> tuple[Any, ...] | None:
    # Outside a transaction the statement is its own transaction (autocommit): no BEGIN/COMMIT
    # round trips while the wallet row is locked. Inside one, a savepoint keeps a refused
    # reservation from aborting the caller's work (unless the caller said it needs none).
    inside = savepoint and connection.in_atomic_block
    with transaction.atomic() if inside else contextlib.nullcontext(), connection.cursor() as cursor:
        cursor.execute(CALL, params)
        return cursor.fetchone()


def _params(
    account: Any, amount: int, reference: str, actor: str, now: datetime, expires: datetime, spend_limit: Any
) -> dict[str, Any]:
    return {
        "amount": amount,
        "now": now,
        "account": _account_pk(account),
        "hold_id": new_hold_id(),
        "entry_id": new_entry_id(),
        "reference": reference,
        "expires": expires,
        "actor": actor,
        "commit_early": early_release(),
        "spend_limit": spend_limit,
    }


def _joined_call(prefix: str) -> str:
    """``credits_reserve``'s statement, its parameters named ``prefix`` + name (``_joined_params``), for a
    caller that sends it among its own statements and ends their transaction itself (a chat turn's
    commit). Not public, as ``holds._reserve_joined``.

    The statement returns one row; ``_committed_hold`` makes it the hold once the caller has committed
    (and, when the parameter ``commit_early`` is true, flushed the WAL: ``durability.FLUSH``). A row
    without a hold id, or an error, is a refusal that the caller rolls back and leaves to
    ``credits_reserve`` to decide and say (the reference is new: nothing of it is kept).
    """
    return CALL.replace("%(", f"%({prefix}")


def _joined_params(
    *, account: Any, amount: int, reference: str, actor: str, spend_limit: int | None, prefix: str
) -> dict[str, Any]:
    """The parameters of ``_joined_call``'s statement, checked as ``credits_reserve`` checks its arguments."""
    params = _params(**_reserve_arguments(account, amount, reference, actor, None, spend_limit, None))
    return {prefix + name: value for name, value in params.items()}


def _committed_hold(params: dict[str, Any], row: tuple[Any, ...], prefix: str) -> Hold:
    """The hold of ``_joined_call``'s ``row``, its transaction committed (and flushed) by the caller."""
    params = {name.removeprefix(prefix): value for name, value in params.items() if name.startswith(prefix)}
    ledger_operation_observe(operation=EntryType.RESERVE, credits=params["amount"])
    return _hold_from_row(params, row)


def _reserved(params: dict[str, Any], row: tuple[Any, ...]) -> Hold:
    """The hold the statement inserted, as the ORM would load it (no query)."""
    if params["commit_early"]:
        flush_after_commit()
    amount = params["amount"]
    # Outside a transaction the statement has committed and this runs at once.
    transaction.on_commit(lambda: ledger_operation_observe(operation=EntryType.RESERVE, credits=amount), robust=True)
    return _hold_from_row(params, row)


def _hold_from_row(params: dict[str, Any], row: tuple[Any, ...]) -> Hold:
    amount, spend_limit = params["amount"], params["spend_limit"]
    values = {
        "id": row[0],
        "public_id": params["hold_id"],
        "wallet_id": row[1],
        "reference": params["reference"],
        "amount": amount,
        "state": HoldState.PENDING,
        "usage": None,
        "captured": 0,
        "overrun": 0,
        "waived": 0,
        "refunded": 0,
        "lease_expires_at": params["expires"],
        "lease_token": 0,
        "actor": params["actor"],
        "created_at": params["now"],
        "resolved_at": None,
        "spend_limit_id": spend_limit,
        "spend_window_start": row[4],
    }
    # Every field by name: a field added to Hold without a value here fails loudly (KeyError).
    names = [field.attname for field in Hold._meta.concrete_fields]
    hold = Hold.from_db(connection.alias, names, [values[name] for name in names])
    hold.spend_limit_state = (row[2], row[3], row[4]) if spend_limit is not None else None
    return hold


def _existing(account: Any, reference: str) -> Hold | None:
    return Hold.objects.filter(wallet__account=account, reference=reference).first()


def _sqlstate(error: BaseException) -> str | None:
    return getattr(error.__cause__, "sqlstate", None)


def _refuse_for_limit(spend_limit: int | None, *, amount: int, now: datetime) -> None:
    """The limit refused the reservation: ``SpendLimitExceededError`` with its figures as they are now."""
    limit = spend_limit_get(pk=spend_limit)
    if limit is None:
        raise SpendLimitError(f"No spend limit {spend_limit}.", param="spend_limit")
    raise spend_limit_exceeded_error(limit, requested=amount, now=now)
