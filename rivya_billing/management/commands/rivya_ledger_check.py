"""``manage.py rivya_ledger_check``: replay every wallet's ledger and fail loudly on drift.

Each wallet is read in one consistent snapshot (REPEATABLE READ on
PostgreSQL), so the check is correct on a live system while work settles.
Spend limits are checked too: each limit's ``used`` must be what its holds in
the current window say. Exits 0 when every wallet and limit is consistent; otherwise prints each problem to
stderr, naming the wallet and its account, and exits non-zero.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rivya_billing.selectors import ledger_check, spend_limit_check


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
        limits: list[str] = []
        if not wallets:
            for limit, expected in spend_limit_check():
                limits.append(f"spend limit {limit.public_id} ({limit.owner_ref})")
                self.stderr.write(f"DRIFT {limits[-1]}: used is {limit.used}, its holds in the window say {expected}")
        if drifted:
            raise CommandError(f"Ledger drift in {len(drifted)} of {checked} wallets: {', '.join(drifted)}")
        if limits:
            raise CommandError(f"Spend limit drift in {len(limits)} limits: {', '.join(limits)}")
        self.stdout.write(self.style.SUCCESS(f"Ledger consistent: {checked} wallets, {entries} entries."))
