"""CPU per settle with the one-statement settle (``PG_SETTLE``) on and off, in interleaved rounds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rivya_<name> .venv/bin/python bench/ledger_settle.py

Creates a throwaway database ``<name>_bench`` on the same server (dropped at the
end unless ``--keep``), migrates it, and in each of ``--rounds`` rounds settles
``--settles`` fresh holds (reserved beforehand, not measured) one after the other
from one client, once per scenario, the order of the scenarios alternating from
round to round:

- in a caller's transaction (as ``chat_turn_finish`` and a generation's finish do:
  the plain path adds a savepoint), ``PG_SETTLE`` on and off;
- alone (autocommit: the plain path is its own transaction), on and off.

Each settle captures part of its hold and releases the rest, on a wallet with an
expiring grant (so the grants are drawn) and a spend limit (so the limit is given
back): every part of the settle runs. Reported, as medians over the rounds: the
client's CPU (this process) and the server's (its PostgreSQL backend, read from
/proc: the server must be local) per settle, wall time per settle, and the
statements one settle sends (including BEGIN/COMMIT, savepoints and the WAL flush
of early lock release).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ledger_reserve import bench_database, cpu_seconds, create_database, drop_database, setup_django  # noqa: E402

SCENARIOS = [
    ("in a caller's transaction", True),
    ("alone (autocommit)", False),
]


def pg_settle(on: bool) -> Any:
    """``RIVYA_BILLING["PG_SETTLE"]`` for one phase."""
    from django.conf import settings
    from django.test import override_settings

    return override_settings(RIVYA_BILLING={**getattr(settings, "RIVYA_BILLING", {}), "PG_SETTLE": on})


def settle_all(account: Any, references: list[str], *, in_transaction: bool) -> None:
    from django.db import transaction

    from rivya_billing import services

    for reference in references:
        with transaction.atomic() if in_transaction else contextlib.nullcontext():
            services.credits_settle(account=account, reference=reference, amount=3)


def reserve_all(account: Any, count: int, tag: str, limit: int) -> list[str]:
    from rivya_billing import services

    references = [f"{tag}:{n}" for n in range(count)]
    for reference in references:
        services.credits_reserve(account=account, amount=10, reference=reference, spend_limit=limit)
    return references


def statements_per_settle(account: Any, limit: int, *, in_transaction: bool) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    (reference,) = reserve_all(account, 1, f"count:{time.monotonic_ns()}", limit)
    with CaptureQueriesContext(connection) as queries:
        settle_all(account, [reference], in_transaction=in_transaction)
    return len(queries.captured_queries)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from rivya_billing import services

    account = get_user_model().objects.create(username="settle-bench", password="!")
    services.credits_grant(account=account, amount=10**12, reference="plain")
    services.credits_grant(
        account=account, amount=10**9, reference="expiring", expires_at=timezone.now() + timedelta(days=30)
    )
    limit = services.spend_limit_set(owner_ref="api_key:settle-bench", credits=10**15, window="day").pk
    phases = [(label, in_tx, on) for label, in_tx in SCENARIOS for on in (True, False)]
    client: dict[Any, list[float]] = {phase: [] for phase in phases}
    server: dict[Any, list[float]] = {phase: [] for phase in phases}
    wall: dict[Any, list[float]] = {phase: [] for phase in phases}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    for round_ in range(args.rounds):
        for label, in_tx, on in phases if round_ % 2 == 0 else phases[::-1]:
            references = reserve_all(account, args.settles, f"r{round_}:{label}:{on}", limit)
            with pg_settle(on):
                settle_all(account, references[:20], in_transaction=in_tx)  # warm: plans, caches
                server0, client0, wall0 = cpu_seconds([backend]), time.process_time(), time.perf_counter()
                settle_all(account, references[20:], in_transaction=in_tx)
                n = len(references) - 20
                server[label, in_tx, on].append((cpu_seconds([backend]) - server0) * 1e6 / n)
                client[label, in_tx, on].append((time.process_time() - client0) * 1e6 / n)
                wall[label, in_tx, on].append((time.perf_counter() - wall0) * 1e6 / n)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    statements = {}
    for label, in_tx, on in phases:
        with pg_settle(on):
            statements[label, in_tx, on] = statements_per_settle(account, limit, in_transaction=in_tx)
    from rivya_billing.models import Wallet
    from rivya_billing.selectors import wallet_reconcile

    problems = wallet_reconcile(wallet_id=Wallet.objects.get(account=account).pk).problems
    print()
    print(f"{args.rounds} rounds of {args.settles} settles per phase (medians; CPU in microseconds per settle)")
    print(f"{'scenario':<28} {'PG_SETTLE':>9} {'client CPU':>11} {'server CPU':>11} {'wall':>9} {'statements':>11}")
    figures: dict[str, Any] = {"rounds": args.rounds, "settles": args.settles}
    for label, in_tx, on in phases:
        c, s, w = (statistics.median(d[label, in_tx, on]) for d in (client, server, wall))
        print(
            f"{label:<28} {'on' if on else 'off':>9} {c:>11.0f} {s:>11.0f} {w:>9.0f} {statements[label, in_tx, on]:>11}"
        )
        key = f"{'in_transaction' if in_tx else 'alone'}_{'on' if on else 'off'}"
        figures[key] = {"client_cpu_us": round(c), "server_cpu_us": round(s), "wall_us": round(w)}
        figures[key]["statements"] = statements[label, in_tx, on]
    for label, in_tx in SCENARIOS:
        on, off = (statistics.median(client[label, in_tx, flag]) for flag in (True, False))
        print(f"{label}: client CPU per settle {on / off:.2f}x of the plain path's")
    print(f"ledger check of the wallet: {'clean' if not problems else problems}")
    if problems:
        sys.exit("DRIFT")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settles", type=int, default=1000, help="Settles per phase and round.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database afterwards.")
    parser.add_argument("--json", action="store_true", help="Also print the figures as one JSON line at the end.")
    args = parser.parse_args()

    import os

    url, name = bench_database(os.environ.get("DATABASE_URL", ""))
    create_database(url, name)
    try:
        setup_django(name, prepared=False)
        figures = measure(args)
        if args.json:
            print(json.dumps(figures))
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(url, name)


if __name__ == "__main__":
    main()
