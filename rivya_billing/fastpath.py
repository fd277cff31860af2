"""Reads of rivya_billing that skip the ORM's query compiler: plain SQL on the chat turn's path.

``credits_available`` runs before every chat turn (a cheap refusal before the
model is called). Compiling its ORM query costs about ten times running it
(``bench/fastpaths.py``, SQLite: 0.65 ms against 0.05 ms), so the query is
written once here, from the model's own table and column names.
``RIVYA_BILLING["AVAILABLE_SQL"] = False`` runs the ORM query instead;
``tests/rivya_billing/test_fastpath.py`` compares the two on every database.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from rivya_billing.models import Wallet


def available(account: Any) -> int:
    """Balance less held of the account's wallet (0 without a wallet)."""
    meta, quote = Wallet._meta, connection.ops.quote_name
    balance, held, owner = (quote(meta.get_field(name).column) for name in ("balance", "held", "account"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {balance} - {held} FROM {quote(meta.db_table)} WHERE {owner} = %s",
            [getattr(account, "pk", account)],
        )
        row = cursor.fetchone()
    return row[0] if row else 0
