"""Services of the credit ledger: the only code that writes wallets, holds and entries.

The API and a host's Studio call these same functions, so both spend one wallet.

Every service is atomic (one database transaction; inside a caller's
transaction it joins it, so e.g. a chat turn can settle in the transaction that
saves the assistant message) and idempotent by its reference: repeating a call
has the effect of doing it once and returns the first result; repeating a
reference with different arguments raises ``ReferenceConflictError`` naming the
argument. Errors are typed (``rivya_billing.exceptions``).

Layout: ``holds`` (reserve, settle, release, expire, the sweeper), ``leases`` (renew),
``balances`` (grant, adjust, refund), ``grants`` (the expiry of expiring grants),
``alerts`` (the low-balance threshold and the publisher of its crossings), ``limits``
(spend limits counted by reservations), ``ledger``
(the posting primitives they share), ``pg_reserve``, ``pg_settle`` and ``durability``
(PostgreSQL's fast paths).

Concurrency. Writes to a wallet are serialised by the wallet's row, never by a
read-check-write in Python:

- the hot path, ``credits_reserve``, is on PostgreSQL one statement: the hold
  INSERT, a conditional ``UPDATE … WHERE balance - held >= amount`` of the wallet
  and the ledger INSERT chained in one statement (``pg_reserve``: a PL/pgSQL function,
  planned once per connection), so the wallet row is locked for one INSERT and the
  commit only (``bench/ledger_reserve.py`` compares it with a row-locked transaction:
  several times faster on a hot wallet; ``PG_RESERVE`` switches it off);
- settling a hold is on PostgreSQL one statement too (``pg_settle``: the plain path's locks
  and writes in one PL/pgSQL call; ``PG_SETTLE`` switches it off);
- every transaction that writes a wallet commits with early lock release
  (``durability``): the row lock is not held through the WAL flush, and the
  service returns only once a flush covers its commit;
- every other service takes row locks (``SELECT … FOR NO KEY UPDATE``), always
  hold before wallet, decides under the lock and writes with an UPDATE that is
  itself guarded by the wallet's sequence number and the database's check
  constraints (``balance >= held >= 0``).

On SQLite (the embedded default) ``transaction_mode: IMMEDIATE`` takes the
database's write lock at BEGIN, so writers are serialised and the same code is
correct there.

Time. Holds are leases: ``now`` defaults to the application clock
(``timezone.now()``) and can be passed in (tests, replays). The hold's state in
the database, not the clocks, decides races: a settle and an expiry of the same
hold both need the hold's row in state ``pending``, and only one gets it.
"""

from rivya_billing.services.alerts import credits_alert_set, credits_low_balance_notices_publish
from rivya_billing.services.balances import credits_adjust, credits_grant, credits_refund
from rivya_billing.services.grants import credits_expire_grants, credits_grant_expire
from rivya_billing.services.holds import (
    credits_expire_lapsed_holds,
    credits_hold_expire,
    credits_release,
    credits_reserve,
    credits_settle,
)
from rivya_billing.services.leases import credits_hold_renew
from rivya_billing.services.limits import (
    spend_limit_get,
    spend_limit_mark_reached,
    spend_limit_set,
    spend_limit_usage,
    spend_limits_get,
    spend_window_resets_at,
    spend_window_start,
)

__all__ = [
    "credits_adjust",
    "credits_alert_set",
    "credits_expire_grants",
    "credits_expire_lapsed_holds",
    "credits_grant",
    "credits_grant_expire",
    "credits_hold_expire",
    "credits_hold_renew",
    "credits_low_balance_notices_publish",
    "credits_refund",
    "credits_release",
    "credits_reserve",
    "credits_settle",
    "spend_limit_get",
    "spend_limit_mark_reached",
    "spend_limit_set",
    "spend_limit_usage",
    "spend_limits_get",
    "spend_window_resets_at",
    "spend_window_start",
]
