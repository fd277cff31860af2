"""``manage.py rivya_ledger_check``: replay every wallet's ledger and fail loudly on drift.

Each wallet is read in one consistent snapshot (REPEATABLE READ on
PostgreSQL), so the check is correct on a live system while work settles.
Exits 0 when every wallet is consistent; otherwise prints each problem to
stderr, naming the wallet and its account, and exits non-zero.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rivya_billing.selectors import ledger_check


class Command(BaseCommand):
    help = "Replay each wallet's ledger entries and verify balances, held credits, holds and sequences."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wallet", type=int, action="append", dest="wallets", help="Only this wallet id (repeatable)."
        )

    def handle(self, *args: Any, wallets: list[int] | None = None, **options: Any) -> None:
        checked = entries = 0
        drifted: list[str] = []
        for check in ledger_check(wallet_ids=wallets):
            checked += 1
            entries += check.entries
            name = f"wallet {check.wallet_id} (account {check.account_id})"
            if check.ok:
                if options["verbosity"] >= 2:
                    self.stdout.write(f"ok  {name}: {check.entries} entries")
                continue
            drifted.append(name)
            for problem in check.problems:
                self.stderr.write(f"DRIFT {name}: {problem}")
        if drifted:
            raise CommandError(f"Ledger drift in {len(drifted)} of {checked} wallets: {', '.join(drifted)}")
        self.stdout.write(self.style.SUCCESS(f"Ledger consistent: {checked} wallets, {entries} entries."))
