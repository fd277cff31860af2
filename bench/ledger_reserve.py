"""Reservations per second on one hot wallet, next to a plain single-row UPDATE, in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rivya_<name> .venv/bin/python bench/ledger_reserve.py

Creates a throwaway database ``<name>_bench`` on the same server (dropped at
the end unless ``--keep``), migrates it, and measures with ``--clients``
concurrent clients (threads, each on its own connection; 64 by default), for
``--seconds`` per measurement, ``--rounds`` times in turn, reporting medians:

- plain single-row UPDATE: ``UPDATE counter SET n = n + 1 WHERE id = 1``
  (autocommit), the ceiling for any write that serialises on one row;
- reserve, hot wallet: ``credits_reserve`` of 1 credit on one wallet, the
  service's PostgreSQL path (one statement: conditional UPDATE of the wallet
  plus the hold and ledger INSERTs, committed with early lock release: see
  ``rivya_billing.services.durability``; the reservation is flushed to disk
  before the call returns);
- reserve, hot wallet, through a limited key: the same statement also checking and
  counting a spend limit (a key's ``credit_limit``, window ``day``) that never binds
  (issue 23: at least 0.8x the plain UPDATE too);
- the same with ``EARLY_LOCK_RELEASE`` off: the wallet's row stays locked
  through the commit's WAL flush;
- the same on a wallet with a low-balance threshold (its trigger runs on every reservation);
- reserve, hot wallet, row-lock path: the portable path (``SELECT … FOR NO KEY
  UPDATE`` then separate statements in a transaction), for comparison;
- reserve, spread over ``--wallets`` wallets (10,000 by default).

Then a zero-overspend check: the clients reserve random amounts from a wallet
of 1,000 credits until it is exhausted; the sum accepted must not exceed 1,000,
and every wallet touched must reconcile (``wallet_reconcile``).
Target (issue 4): hot-wallet reserve at least 0.8x the plain single-row UPDATE.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def bench_database(url: str) -> tuple[str, str]:
    """(admin URL, bench database name) for ``DATABASE_URL``."""
    import environ

    config = environ.Env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench/ledger_reserve.py measures PostgreSQL: set DATABASE_URL=postgres://…")
    return url, f"{config['NAME']}_bench"


def create_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(name: str, prepared: bool) -> None:
    import django
    from django.conf import settings

    django.setup()
    # As in production: with DEBUG on, Django logs every query it runs (rendering its SQL
    # with the parameters), which costs a client more than the reservation itself.
    settings.DEBUG = False
    db = settings.DATABASES["default"]
    db["NAME"] = name
    # One connection per client thread, not a shared pool of DATABASE_POOL_MAX_SIZE.
    db.setdefault("OPTIONS", {}).pop("pool", None)
    if prepared:
        # Server-side binding and prepared statements: statements run often are planned once
        # per connection. (Django's default keeps both off for connection-pooler safety.)
        db["OPTIONS"].update({"server_side_binding": True, "prepare_threshold": 2})
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the given processes have used, from /proc (PostgreSQL: local server only)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # not on this machine, or gone
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    ok: int
    failed: int
    amount: int  # sum of what the successful calls returned (credits accepted, for the overspend check)
    server_cpu: float  # seconds, PostgreSQL backends of the clients
    client_cpu: float  # seconds, the client processes


def run_clients(clients: int, seconds: float, op: Callable[[int, int], int], processes: int) -> Measurement:
    """Run ``op(client, i)`` in a loop on every client for ``seconds``, each client on its own connection.

    The clients are threads spread over ``processes`` forked processes, so that
    one Python interpreter (one GIL) is not what is measured. ``op`` returns what
    it accepted (0: refused).
    """
    from django.db import connection, connections

    connections.close_all()  # no connection crosses the fork
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(clients + 1)
    stop = context.Event()
    results = context.Queue()
    shares = [clients // processes + (1 if n < clients % processes else 0) for n in range(processes)]
    firsts = [sum(shares[:n]) for n in range(processes)]
    workers = [
        context.Process(target=client_process, args=(first, share, op, ready, stop, results))
        for first, share in zip(firsts, shares, strict=True)
        if share
    ]
    for worker in workers:
        worker.start()
    ready.wait()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cursor.fetchall()]
    client_pids = [worker.pid for worker in workers]
    server0, client0 = cpu_seconds(pids), cpu_seconds(client_pids)
    time.sleep(seconds)
    stop.set()
    server1, client1 = cpu_seconds(pids), cpu_seconds(client_pids)
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    connection.close()
    errors = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if errors:
        raise RuntimeError(errors[0])
    ok, failed, amount = (sum(outcome[n] for outcome in outcomes) for n in range(3))
    return Measurement(ok, failed, amount, server1 - server0, client1 - client0)


def client_process(first: int, count: int, op: Callable[[int, int], int], ready: Any, stop: Any, results: Any) -> None:
    """One client process: ``count`` threads, numbered from ``first``, until ``stop``."""
    from django.db import connection

    random.seed(os.getpid())
    stopped = threading.Event()  # checked per call; cheaper than the cross-process event
    counts = [[0, 0, 0] for _ in range(count)]
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            connection.ensure_connection()
            ready.wait()
            i = 0
            while not stopped.is_set():
                accepted = op(first + n, i)
                counts[n][0 if accepted else 1] += 1
                counts[n][2] += accepted
                i += 1
        except BaseException as exc:
            errors.append(f"client {first + n}: {exc!r}")
            stopped.set()
            ready.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    while not stop.wait(0.05) and not stopped.is_set():
        pass
    stopped.set()
    for thread in threads:
        thread.join()
    results.put(errors[0] if errors else tuple(sum(c[k] for c in counts) for k in range(3)))


FLUSH_UNDER_LOCK = "reserve, hot wallet, flush under the lock"
LIMITED = "reserve, hot wallet, through a limited key"


def early_lock_release(on: bool) -> Any:
    """``RIVYA_BILLING["EARLY_LOCK_RELEASE"]`` for one scenario (the forked clients inherit it)."""
    from django.conf import settings
    from django.test import override_settings

    return override_settings(RIVYA_BILLING={**getattr(settings, "RIVYA_BILLING", {}), "EARLY_LOCK_RELEASE": on})


def make_accounts(count: int, balance: int, prefix: str) -> list[Any]:
    """Accounts with wallets of ``balance`` credits, each with its one grant entry (bulk, for setup speed)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from rivya_billing.models import EntryType, LedgerEntry, Wallet

    User = get_user_model()
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=f"{prefix}{n}", password="!") for n in range(count)], batch_size=2000
        )
        wallets = Wallet.objects.bulk_create(
            [Wallet(account=user, balance=balance, last_sequence=1) for user in users], batch_size=2000
        )
        LedgerEntry.objects.bulk_create(
            [
                LedgerEntry(
                    wallet=wallet,
                    sequence=1,
                    type=EntryType.GRANT,
                    amount=balance,
                    balance_delta=balance,
                    held_delta=0,
                    balance_after=balance,
                    held_after=0,
                    reference="bench:grant",
                )
                for wallet in wallets
            ],
            batch_size=2000,
        )
    return users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--processes", type=int, default=8, help="Client processes the clients are spread over (threads in each)."
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database afterwards.")
    parser.add_argument(
        "--prepared", action="store_true", help="Connect with server-side binding and prepared statements."
    )
    parser.add_argument(
        "--json", action="store_true", help="Print the table to stderr and the figures as one JSON line (bench/run.py)."
    )
    args = parser.parse_args()

    url, name = bench_database(os.environ.get("DATABASE_URL", ""))
    create_database(url, name)
    try:
        setup_django(name, args.prepared)
        report(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(url, name)


def report(args: argparse.Namespace) -> None:
    if args.json:
        # bench/run.py reads the last stdout line; everything human goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            figures = measure(args)
        print(json.dumps(figures))
    else:
        measure(args)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from rivya_billing import services
    from rivya_billing.exceptions import InsufficientCreditsError
    from rivya_billing.models import Hold, Wallet
    from rivya_billing.selectors import spend_limit_check, wallet_reconcile
    from rivya_billing.services.holds import _reserve_locked

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint NOT NULL)")
        cursor.execute("INSERT INTO bench_counter VALUES (1, 0)")
        cursor.execute("SELECT version()")
        server = cursor.fetchone()[0].split(",")[0]

    hot, locked_hot, alert_hot, limited_hot = make_accounts(4, 10**15, "hot")
    # A low-balance threshold arms the wallet's trigger (migration 0006) on every reservation;
    # threshold 1 is never crossed here, so this measures the trigger's cost, not the notices'.
    services.credits_alert_set(account=alert_hot, low_balance_threshold=1)
    limit = services.spend_limit_set(owner_ref="api_key:bench", credits=10**15, window="day")
    spread = make_accounts(args.wallets, 10**12, "spread")
    connection.close()

    def plain_update(client: int, i: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE bench_counter SET n = n + 1 WHERE id = 1")
        return 1

    def reserve_hot(client: int, i: int) -> int:
        services.credits_reserve(account=hot, amount=1, reference=f"hot:{client}:{i}:{time.monotonic_ns()}")
        return 1

    def reserve_hot_alert(client: int, i: int) -> int:
        services.credits_reserve(account=alert_hot, amount=1, reference=f"alert:{client}:{i}:{time.monotonic_ns()}")
        return 1

    def reserve_hot_limited(client: int, i: int) -> int:
        services.credits_reserve(
            account=limited_hot, amount=1, reference=f"lim:{client}:{i}:{time.monotonic_ns()}", spend_limit=limit.pk
        )
        return 1

    def reserve_hot_locked(client: int, i: int) -> int:
        now = timezone.now()
        _reserve_locked(
            account=locked_hot,
            amount=1,
            reference=f"lock:{client}:{i}:{time.monotonic_ns()}",
            actor="",
            now=now,
            expires=now + timedelta(hours=1),
        )
        return 1

    def reserve_spread(client: int, i: int) -> int:
        account = spread[random.randrange(len(spread))]
        services.credits_reserve(account=account, amount=1, reference=f"spread:{client}:{i}:{time.monotonic_ns()}")
        return 1

    scenarios = [
        ("plain single-row UPDATE (autocommit)", plain_update),
        ("reserve, hot wallet (single statement)", reserve_hot),
        (FLUSH_UNDER_LOCK, reserve_hot),
        ("reserve, hot wallet (row-lock path)", reserve_hot_locked),
        (f"reserve, spread over {args.wallets:,} wallets", reserve_spread),
        # Last, so the indexes above stay those the results read.
        ("reserve, hot wallet, low-balance alert set", reserve_hot_alert),
        (LIMITED, reserve_hot_limited),
    ]
    rates: dict[str, list[float]] = {label: [] for label, _ in scenarios}
    totals: dict[str, int] = {label: 0 for label, _ in scenarios}
    server_cpu: dict[str, float] = {label: 0.0 for label, _ in scenarios}
    client_cpu: dict[str, float] = {label: 0.0 for label, _ in scenarios}
    for round_ in range(args.rounds):
        for label, op in scenarios:
            with early_lock_release(label != FLUSH_UNDER_LOCK):
                m = run_clients(args.clients, args.seconds, op, args.processes)
            assert m.failed == 0, f"{label}: {m.failed} failures"
            rates[label].append(m.ok / args.seconds)
            totals[label] += m.ok
            server_cpu[label] += m.server_cpu
            client_cpu[label] += m.client_cpu
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{r[-1]:.0f}" for r in rates.values()), flush=True)

    # Zero overspend: everyone grabs random amounts from 1,000 credits until none are left.
    (scarce,) = make_accounts(1, 1_000, "scarce")

    def overspend(client: int, i: int) -> int:
        amount = random.randint(1, 9)
        try:
            services.credits_reserve(account=scarce, amount=amount, reference=f"scarce:{client}:{i}")
        except InsufficientCreditsError:
            return 0
        return amount

    grabbed = run_clients(args.clients, 2.0, overspend, args.processes)
    load = os.getloadavg()
    scarce_wallet = Wallet.objects.get(account=scarce)
    hot_wallets = [Wallet.objects.get(account=a) for a in (hot, locked_hot, alert_hot, limited_hot, scarce)]
    problems = {w.pk: wallet_reconcile(wallet_id=w.pk).problems for w in hot_wallets}
    spread_held = sum(Wallet.objects.filter(account__in=spread).values_list("held", flat=True))
    spread_holds = Hold.objects.filter(wallet__account__in=spread).count()

    base = statistics.median(rates[scenarios[0][0]])
    print()
    print(
        f"PostgreSQL: {server}; {os.cpu_count()} CPUs, load average {load[0]:.1f}; {args.clients} clients in "
        f"{args.processes} processes; "
        f"{args.rounds} rounds of {args.seconds:g} s; medians"
    )
    print(
        f"{'scenario':<44} {'ops/s':>9} {'vs UPDATE':>10} {'ops total':>10} "
        f"{'server CPU ms/op':>17} {'client CPU ms/op':>17}"
    )
    for label, _ in scenarios:
        rate = statistics.median(rates[label])
        per_op = 1000 / max(1, totals[label])
        print(
            f"{label:<44} {rate:>9.0f} {rate / base:>9.2f}x {totals[label]:>10} "
            f"{server_cpu[label] * per_op:>17.3f} {client_cpu[label] * per_op:>17.3f}"
        )
    print()
    print(
        f"zero overspend: {grabbed.ok} reservations accepted, {grabbed.amount} of 1000 credits held "
        f"(wallet held {scarce_wallet.held}, available {scarce_wallet.available}); "
        f"spread wallets held {spread_held} for {spread_holds} holds"
    )
    overspent = grabbed.amount > 1_000 or scarce_wallet.held != grabbed.amount or spread_held != spread_holds
    drift = {pk: p for pk, p in problems.items() if p}
    limit_drift = [found.pk for found, _ in spend_limit_check()]
    if limit_drift:
        drift["spend limits"] = limit_drift
    print(f"ledger check of the hot wallets: {'clean' if not drift else drift}")
    ratio = statistics.median(rates[scenarios[1][0]]) / base
    print(f"target hot-wallet reserve >= 0.8x plain UPDATE: {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f}x)")
    alert_ratio = statistics.median(rates[scenarios[5][0]]) / base
    print(f"hot-wallet reserve with a low-balance threshold: {alert_ratio:.2f}x plain UPDATE")
    limited = statistics.median(rates[LIMITED]) / base
    print(f"target limited-key reserve >= 0.8x plain UPDATE: {'met' if limited >= 0.8 else 'NOT met'} ({limited:.2f}x)")
    if overspent or drift:
        sys.exit("OVERSPEND OR DRIFT")
    medians = {label: statistics.median(values) for label, values in rates.items()}
    hot, spread = medians[scenarios[1][0]], medians[scenarios[4][0]]
    return {
        "clients": args.clients,
        "plain_update_per_s": round(base),
        "hot_per_s": round(hot),
        "hot_flush_under_lock_per_s": round(medians[FLUSH_UNDER_LOCK]),
        "hot_row_lock_path_per_s": round(medians[scenarios[3][0]]),
        "hot_low_balance_alert_per_s": round(medians[scenarios[5][0]]),
        "spread_per_s": round(spread),
        "spread_wallets": args.wallets,
        "hot_over_plain_update": round(hot / base, 2),
        "hot_over_spread": round(hot / spread, 2),
        "hot_limited_key_per_s": round(medians[LIMITED]),
        "hot_limited_key_over_plain_update": round(medians[LIMITED] / base, 2),
        "limited_met": medians[LIMITED] / base >= 0.8,
        "overspend": False,
        "server_cpu_ms_per_op": {
            "plain_update": round(server_cpu[scenarios[0][0]] * 1000 / max(1, totals[scenarios[0][0]]), 3),
            "hot": round(server_cpu[scenarios[1][0]] * 1000 / max(1, totals[scenarios[1][0]]), 3),
        },
        "met": hot / base >= 0.8,
    }


if __name__ == "__main__":
    main()
