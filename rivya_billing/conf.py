"""Settings for rivya_billing, read from the ``RIVYA_BILLING`` dict.

Read ``billing_settings.X`` inside functions, never at import time, so that
``override_settings`` and the ``rivya_settings`` test fixture take effect.
``AppSettings`` and ``account_model_label`` live in ``rivya_core.conf``; they are
re-exported here because hosts and migrations imported them from this module.
"""

from __future__ import annotations

from typing import Any

from rivya_core.conf import AppSettings, account_model_label

__all__ = ["DEFAULTS", "AppSettings", "account_model_label", "billing_settings"]

DEFAULTS: dict[str, Any] = {
    # The name of the wallet's unit, shown next to every amount (amounts are integers of it).
    "UNIT": "credits",
    # Lease a new hold gets at reservation: long enough to cover the time the work may wait in
    # a queue, since a busy worker is not a dead one. Running work renews it.
    "HOLD_LEASE_SECONDS": 60 * 60,
    # Lease a renewal extends to, counted from the renewal (``credits_hold_renew``).
    "HOLD_RENEW_SECONDS": 10 * 60,
    # Usage reported above a hold at settle time:
    #   "cap"       - charge the hold only; the difference is booked as a zero-effect ``waive`` line.
    #   "available" - also charge the difference from the available balance (an ``overrun`` line),
    #                 up to what is available; whatever is still uncovered is booked as ``waive``.
    "OVERRUN_POLICY": "cap",
    # On PostgreSQL, a transaction that writes a wallet commits asynchronously and is flushed
    # before the service returns, so the wallet's row lock is not held through the WAL flush
    # (services.durability). False: every wallet write commits synchronously under the lock.
    "EARLY_LOCK_RELEASE": True,
    # On PostgreSQL, a reservation is one call of the PL/pgSQL function of services/pg_reserve.sql
    # (no round trips under the wallet's row lock). False: the portable row-lock path, as on SQLite.
    "PG_RESERVE": True,
    # On PostgreSQL, settling a hold is one call of the PL/pgSQL function of services/pg_settle.sql
    # (one statement instead of seven to nine; inside a caller's transaction it keeps the plain path's
    # savepoint, so a database error does not abort the caller's work; same rows, same errors).
    # False: the portable row-lock path, as on SQLite.
    "PG_SETTLE": True,
    # On PostgreSQL, renewing or claiming a hold's lease (credits_hold_renew: a generation's claim and
    # heartbeat) is one UPDATE ... RETURNING (services/pg_renew.py) instead of the hold's row lock and its
    # UPDATE; what it refuses is decided by the plain path. Inside a caller's transaction it keeps the
    # plain path's savepoint, so a database error does not abort the caller's work (a generation's own
    # claim and heartbeat skip it). False: the portable row-lock path.
    "PG_HOLD_RENEW": True,
    # On SQLite (the embedded configuration), a reservation's and a settle's rows are written by statements
    # built once (services/sqlite_holds.py) rather than ORM queries compiled on every call, in the plain
    # path's transaction (BEGIN IMMEDIATE holds the write lock); same rows, same refusals. A reservation
    # with a spend limit, and the settle of a hold counted against one, take the plain path; so does a
    # reservation while a pre_save/post_save receiver is connected for Hold (the built INSERT sends none).
    # False: the plain path.
    "SQLITE_HOLDS": True,
    # credits_available (before every chat turn) as plain SQL written once (rivya_billing.fastpath)
    # rather than an ORM query compiled on every call. False: the ORM query.
    "AVAILABLE_SQL": True,
    # wallet_get (GET /api/v1/credits) with the ORM query compiled once per thread (rivya_billing.fastpath)
    # rather than on every call. False: the ORM query.
    "WALLET_GET_COMPILED": True,
    # Most lapsed holds, and most due expiring grants, one sweep expires (each sweep runs again on its beat).
    "EXPIRE_BATCH_SIZE": 500,
    # Most low-balance notices one run of the credits.low publisher hands on (it runs again on its beat).
    "NOTICE_BATCH_SIZE": 500,
    # Window of the "recent activity" totals shown next to a wallet's balance.
    "ACTIVITY_WINDOW_DAYS": 30,
}

billing_settings = AppSettings("RIVYA_BILLING", DEFAULTS)
