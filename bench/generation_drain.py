"""Benchmark: what one no-op generation costs a worker, against a raw Celery no-op task.

    DATABASE_URL=postgres://…/rivya_gens REDIS_URL=redis://…/3 .venv/bin/python bench/generation_drain.py \\
        [--jobs 300] [--concurrency 2] [--json] [--switch NAME[,NAME…] [--rounds 3]] [--profile FILE]

Three phases, in turn in each of ``--rounds`` rounds (ratios taken within a round, then their
median): raw Celery no-op tasks, the no-op jobs' floor (``bench/job_floor.py``: a raw Celery task
making a generation's round trips and nothing else) and no-op generations. Each phase queues its
work first, then starts the Procfile's worker command (prefork) and times the drain. Per phase:
jobs per second (first to last completion), the worker's CPU seconds per job (robust on a shared
machine; live processes only, so not the provider's short-lived forks) and the PostgreSQL
transactions per job
(``pg_stat_database`` of this database, commits and rollbacks, from the consumer's resume to
the worker's exit; the bench's own reads and every session's login subtracted: PostgreSQL counts a
new connection's login as a transaction, the bench's own connections' included). Jobs are
accepted through the service, not over HTTP: the drain is what is measured (``bench/run.py``
row (2) times the HTTP path).

``--switch``: the generations phase in ``--rounds`` pairs of rounds with those boolean settings
(``[NAMESPACE.]NAME``, ``RIVYA_API`` by default) on and off in the worker (off through
``RIVYA_BENCH_SWITCHES_OFF``, read by ``bench/settings.py``), alternating which goes first; each
figure's median per side and the median of the pairs' differences (off minus on), which a slower
spell of the shared machine moves less. ``--profile FILE``: py-spy's raw samples of the worker's
processes (children, main process, provider processes) during the generations phase's drain.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_setup import paired_summary  # noqa: E402
from bench.run import (  # noqa: E402
    LOGIN,
    celery_worker,
    database_transactions,
    group_cpu_seconds,
    purge_queue,
    settled_transactions,
)


def _drain(env: dict[str, str], name: str, concurrency: int, count: int, queue, done, *, db_polls: bool) -> dict:  # type: ignore[no-untyped-def]
    """Start a worker, pause its consumer, ``queue()`` the work, then time the drain until ``done()`` is ``count``.

    The worker's start and the queueing are outside what is measured: CPU and transactions
    are counted from the resume to the worker's exit (less this bench's own reads when
    ``done`` reads the database: one transaction a call).
    """
    from config.celery import app

    dsn = env["DATABASE_URL"]
    log = ROOT / "var" / "bench" / f"drain-{name}.log"
    with celery_worker(env, log, concurrency) as worker:
        hostname = _wait_ready(app, worker)
        app.control.cancel_consumer("celery", destination=[hostname], reply=True)
        queue()
        before = settled_transactions(dsn)
        cpu_before = group_cpu_seconds(worker.pid)
        spy = _py_spy(worker.pid, env.get("RIVYA_BENCH_PROFILE"))
        app.control.add_consumer("celery", destination=[hostname], reply=True)
        reads, deadline = 1, time.monotonic() + 600
        while (finished := done()) < count:
            reads += 1
            if time.monotonic() > deadline:
                return {"error": f"only {finished}/{count} finished"}
            time.sleep(0.2)
        cpu = group_cpu_seconds(worker.pid) - cpu_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted
            spy.wait(60)
    getattr(done, "close", lambda: None)()
    time.sleep(1)  # the worker's backends report as they exit
    after = database_transactions(dsn)
    own = LOGIN + 1 + (LOGIN + reads if db_polls else 0)  # the last read's connection; the poller's
    return {"cpu_s": cpu, "transactions": after - before - own}


def _py_spy(pid: int, out: str | None) -> subprocess.Popen | None:  # type: ignore[type-arg]
    """py-spy recording the worker's process tree into ``out`` (raw folded stacks), or None."""
    if not out:
        return None
    command = [str(ROOT / ".venv/bin/py-spy"), "record", "--subprocesses", "--nonblocking", "-r", "250"]
    command += ["-f", "raw", "-o", out, "-p", str(pid)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached before the drain starts
    return spy


def _wait_ready(app, worker) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for reply in app.control.ping(timeout=0.5) or []:
            for hostname in reply:
                if hostname.startswith(f"rivya-bench-{os.getpid()}@"):
                    return hostname
        if worker.poll() is not None:
            raise RuntimeError("the worker exited")
    raise RuntimeError("the worker did not start")


class _Poller:
    """``done()`` for the generations phase: one read a call, on one connection of its own, in
    autocommit (so one transaction a read, subtracted by ``_drain``). A connection per read
    would add its own start-up transactions, which this bench cannot subtract exactly (about
    one more a read: a slow drain read up to 0.5 transactions a job too many)."""

    def __init__(self, dsn: str, sql: str, params: list) -> None:  # type: ignore[type-arg]
        self.dsn, self.sql, self.params, self.conn = dsn, sql, params, None

    def __call__(self) -> int:
        import psycopg

        if self.conn is None:
            # Not prepared: psycopg's PREPARE (a Parse and its own Sync) is a transaction of its own.
            self.conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None)
        return int(self.conn.execute(self.sql, self.params).fetchone()[0])

    def close(self) -> None:
        """Before the last read: a backend's counts reach the view when it exits."""
        if self.conn is not None:
            self.conn.close()


def raw_noops(env: dict[str, str], count: int, concurrency: int) -> dict:
    import redis

    from bench.tasks import DONE_KEY, noop_task

    client = redis.Redis.from_url(env["REDIS_URL"])
    client.delete(DONE_KEY)

    def queue() -> None:
        for _ in range(count):
            noop_task.delay()

    result = _drain(env, "raw", concurrency, count, queue, lambda: client.llen(DONE_KEY), db_polls=False)
    stamps = sorted(float(x) for x in client.lrange(DONE_KEY, 0, -1))
    client.delete(DONE_KEY)
    return _figures(result, count, stamps[-1] - stamps[0])


def job_floor(env: dict[str, str], count: int, concurrency: int) -> dict:
    """The no-op jobs' floor (``bench/job_floor.py``): a raw Celery task making a generation's round trips."""
    from bench.job_floor import FINISHED, job_floor_task, prepare

    dsn = env["DATABASE_URL"]
    ids = prepare(dsn, count)

    def queue() -> None:
        for row_id in ids:
            job_floor_task.delay(row_id)

    result = _drain(env, "floor", concurrency, count, queue, _Poller(dsn, FINISHED, [ids]), db_polls=True)
    if "error" in result:
        return result
    import psycopg

    with psycopg.connect(dsn) as conn:
        _, first, last = conn.execute(FINISHED, [ids]).fetchone()
    return _figures(result, count, (last - first).total_seconds())


def noop_generations(env: dict[str, str], count: int, concurrency: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from rivya_api.accounts import account_for_user
    from rivya_api.generations.services import generation_create
    from rivya_billing.services import credits_grant

    account = account_for_user(get_user_model().objects.create_user(username="drain-" + os.urandom(4).hex()))
    credits_grant(account=account, amount=10 * count, reference="drain")
    ids: list[int] = []

    def queue() -> None:
        for i in range(count):
            ids.append(generation_create(account=account, model_id="bench-noop", input={"prompt": f"n{i}"}).pk)
        connection.close()

    dsn = env["DATABASE_URL"]
    # "id > before" lets the poll scan the primary key's index, not every task a reused database holds
    # (``ids`` is filled by ``queue``, inside the drain, after the poller is made).
    from django.db.models import Max

    from rivya_api.generations.models import GenerationTask

    before = GenerationTask.objects.aggregate(last=Max("id"))["last"] or 0
    finished = (
        "SELECT count(*) FROM rivya_api_generationtask WHERE id > %s AND id = ANY(%s) AND completed_at IS NOT NULL"
    )
    poller = _Poller(dsn, finished, [before, ids])
    result = _drain(env, "gen", concurrency, count, queue, poller, db_polls=True)
    if "error" in result:
        return result  # not drained: no figures (switch_rounds reports it)

    tasks = GenerationTask.objects.filter(pk__in=ids)
    stamps = tasks.exclude(completed_at=None).values_list("completed_at", flat=True)
    succeeded = tasks.filter(status="succeeded").count()
    connection.close()
    return {**_figures(result, count, (max(stamps) - min(stamps)).total_seconds()), "succeeded": succeeded}


def _figures(result: dict, count: int, seconds: float) -> dict:
    if "error" in result:
        return result
    return {
        "count": count,
        "per_s": round((count - 1) / seconds, 1),
        "worker_cpu_ms_per_job": round(1000 * result["cpu_s"] / count, 2),
        "transactions_per_job": round(result["transactions"] / count, 2),
    }


def switch_rounds(env: dict[str, str], args: argparse.Namespace) -> dict:
    """The generations phase with ``args.switch`` on and off, ``args.rounds`` pairs, alternating which goes first."""
    names = ("per_s", "worker_cpu_ms_per_job", "transactions_per_job")
    per_round: dict[tuple[str, bool], list[float]] = {(name, on): [] for name in names for on in (True, False)}
    for index in range(2 * args.rounds):
        on = (index % 2 == 0) != (index % 4 >= 2)  # on, off, off, on, …
        round_env = {**env, "RIVYA_BENCH_SWITCHES_OFF": "" if on else args.switch}
        figures = noop_generations(round_env, args.jobs, args.concurrency)
        if "error" in figures or figures["succeeded"] != args.jobs:
            return {"error": figures}
        for name in names:
            per_round[name, on].append(figures[name])
    return paired_summary(args.switch, names, per_round)


def three_phase_rounds(env: dict[str, str], args: argparse.Namespace) -> dict:
    """Raw Celery no-ops, the jobs' floor and no-op generations, drained in turn in each of
    ``args.rounds`` rounds: each round's ratios are of drains a few seconds apart, which a
    machine whose speed drifts moves less than one raw drain against later ones."""
    gen_env = {**env, "RIVYA_BENCH_PROFILE": args.profile} if args.profile else env
    phases = {
        "raw_celery_noops": lambda: raw_noops(env, args.jobs, args.concurrency),
        "job_floor": lambda: job_floor(env, args.jobs, args.concurrency),
        "noop_generations": lambda: noop_generations(gen_env, args.jobs, args.concurrency),
    }
    rounds = [{name: phase() for name, phase in phases.items()} for _ in range(args.rounds)]
    per_s = {name: [r[name].get("per_s") for r in rounds] for name in phases}
    if any(None in values for values in per_s.values()):
        return {"error": rounds}

    def ratios(a: str, b: str) -> list[float]:
        return [round(x / y, 3) for x, y in zip(per_s[a], per_s[b], strict=True)]

    return {
        "rounds": rounds,
        "per_s": per_s,
        "median_ratio": {
            "generations_vs_raw": statistics.median(ratios("noop_generations", "raw_celery_noops")),
            "floor_vs_raw": statistics.median(ratios("job_floor", "raw_celery_noops")),
            "generations_vs_floor": statistics.median(ratios("noop_generations", "job_floor")),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--switch", help="[NAMESPACE.]NAME of boolean settings, comma-separated: on vs off")
    parser.add_argument(
        "--rounds", type=int, default=3, help="pairs of rounds (--switch), else rounds of the three phases"
    )
    parser.add_argument("--profile", help="py-spy raw samples of the generations phase's worker, to this file")
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    env.setdefault("SECRET_KEY", "bench-" + os.urandom(16).hex())
    env["PYTHONPATH"] = str(ROOT)
    os.environ.update(env)
    import django

    django.setup()
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    purge_queue(env)
    if args.switch:
        result = {"raw_celery_noops": raw_noops(env, args.jobs, args.concurrency)}
        result["noop_generations_switch"] = switch_rounds(env, args)
    else:
        result = three_phase_rounds(env, args)
    purge_queue(env)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
