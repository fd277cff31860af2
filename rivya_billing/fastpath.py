"""Reads of rivya_billing that skip the ORM's query compiler: plain SQL on the chat turn's path.

``credits_available`` runs before every chat turn (a cheap refusal before the
model is called). Compiling its ORM query costs about ten times running it
(``bench/fastpaths.py``, SQLite: 0.65 ms against 0.05 ms), so the query is
written once here, from the model's own table and column names.
``RIVYA_BILLING["AVAILABLE_SQL"] = False`` runs the ORM query instead;
``tests/rivya_billing/test_fastpath.py`` compares the two on every database.

``wallet_load`` is ``wallet_get``'s read (``GET /api/v1/credits``, every call):
the ORM's query compiled once per thread and database, its rows made into
instances the way ``QuerySet`` iteration makes them (``Wallet.from_db``). What it
reaches into (``get_compiler``, ``results_iter``) is Django's, not public, so the
same test module compares it with the ORM's ``get``;
``RIVYA_BILLING["WALLET_GET_COMPILED"] = False`` runs the ORM query instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections, router

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


def available_statement(account: str) -> str:
    """``available``'s query for the wallet of the account that the SQL expression ``account`` names,
    for a caller that sends it among its own statements (a chat turn's finish: its funds hint)."""
    meta, quote = Wallet._meta, connection.ops.quote_name
    balance, held, owner = (quote(meta.get_field(name).column) for name in ("balance", "held", "account"))
    return f"SELECT {balance} - {held} FROM {quote(meta.db_table)} WHERE {owner} = {account}"


_ACCOUNT_MARKER = -7_654_321  # stands for the account's id while compiling; never a real id


@dataclass(frozen=True)
class _CompiledWalletRead:
    """The wallet-by-account query, compiled once per thread and database."""

    compiler: Any  # its connection is the thread's, for the database it was compiled for
    sql: str
    init_list: list[str]

    @classmethod
    def compile(cls, alias: str) -> _CompiledWalletRead:
        compiler = Wallet.objects.using(alias).filter(account=_ACCOUNT_MARKER).query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        if list(params) != [_ACCOUNT_MARKER]:
            raise RuntimeError(f"Unexpected parameters of the wallet read: {params!r}")
        init_list = [column[0].target.attname for column in compiler.select]
        return cls(compiler=compiler, sql=sql, init_list=init_list)

    def fetch(self, alias: str, account_id: Any) -> Wallet | None:
        with self.compiler.connection.cursor() as cursor:
            cursor.execute(self.sql, [account_id])
            rows = cursor.fetchmany(2)
        if len(rows) > 1:  # one wallet per account (a unique column): as get() would say
            raise Wallet.MultipleObjectsReturned("More than one wallet for an account.")
        for row in self.compiler.results_iter(results=[rows]):
            return Wallet.from_db(alias, self.init_list, row)
        return None


_compiled = threading.local()


def wallet_load(account: Any) -> Wallet | None:
    """The account's wallet from the database (what ``Wallet.objects.get(account=…)`` reads), or None."""
    alias = router.db_for_read(Wallet)
    reads = _compiled.__dict__.setdefault("by_alias", {})
    read = reads.get(alias)
    if read is None or read.compiler.connection is not connections[alias]:
        read = reads[alias] = _CompiledWalletRead.compile(alias)
    if hasattr(account, "_meta") and (account.pk is None or not isinstance(account, _account_model())):
        return _orm_wallet(account)  # the ORM's own checks decide (a wrong model or an unsaved one raises)
    return read.fetch(alias, getattr(account, "pk", account))


def _account_model() -> type:
    return Wallet._meta.get_field("account").related_model


def _orm_wallet(account: Any) -> Wallet | None:
    try:
        return Wallet.objects.get(account=account)
    except Wallet.DoesNotExist:
        return None
