"""``make bench``: every figure that matters, as a ratio against a baseline measured in the same run.

    DATABASE_URL=postgres://…/rivya_bench REDIS_URL=redis://…/0 .venv/bin/python bench/run.py [--quick]

Prints one table and writes ``bench/results.json``. Each row is a measured path next
to its baseline, both taken in this run on this machine, with the ratio and the target.

* HTTP: the server is the stack's web process (gunicorn with uvicorn workers,
  ``config/gunicorn.py``) under ``bench.settings``, which is ``config.settings`` plus a
  bare DRF hello-world (``GET /bench/hello``) and a no-op model. Baseline and measured
  endpoint are served by the same server, middleware and process count, in
  interleaved rounds (the median is reported). Load comes from ``wrk`` (one thread, in
  its own process); its CPU use is reported next to the server's, to show it is not the
  bottleneck.
* Background work: raw Celery no-op tasks vs no-op generations end to end, drained by
  the same worker command as the stack's (prefork, one child per CPU), on the same broker;
  and their floor, a raw Celery task making a generation's round trips (``bench/job_floor.py``).
* Ledger, webhooks, chat: each issue's own script, called in its JSON output mode.
  A row whose endpoint or script is not in this build says "not available".
* Chat, issue 25 (rows 25.x, ``bench/chat_targets.py``): the production configuration's added
  TTFT and the fast / many / burst waves in both configurations, the gateway pinned to one CPU.
  ``--chat-only`` runs just those (``--chat-only --quick`` at smoke sizes).

Uses its own database (created if missing) and the given Redis; the Celery queue on that
Redis is purged before and after the background phases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_targets import chat_target_rows, run_chat_targets  # noqa: E402
from bench.summary import readme_update, summary_table  # noqa: E402
from config.provision import ensure_database, ensure_redis, fail, say  # noqa: E402

RESULTS = ROOT / "bench" / "results.json"
PYTHON = sys.executable
NOT_AVAILABLE = "not available"


# --- machine and environment -----------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
    import django
    import psycopg
    import redis

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        max_conn = conn.execute("SHOW max_connections").fetchone()[0]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    started = time.perf_counter()
    for _ in range(200):
        client.ping()
    rtt_ms = (time.perf_counter() - started) / 200 * 1000
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0:1]
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": pg,
        "postgresql_max_connections": int(max_conn),
        "redis": client.info("server")["redis_version"],
        "redis_rtt_ms": round(rtt_ms, 3),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "load_generator": (wrk_version[0].split(" [")[0] if wrk_version else "wrk"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[2] is pgrp (after state and ppid)
            total += int(fields[11]) + int(fields[12])
    return total / tick


# --- processes -------------------------------------------------------------------------


class Server:
    """The stack's web process (gunicorn + uvicorn workers) on an OS-assigned port."""

    def __init__(self, env: dict[str, str], log: Path, workers: int) -> None:
        self.env = {**env, "BIND": "127.0.0.1:0", "WEB_CONCURRENCY": str(workers)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Server:
        command = [str(Path(PYTHON).parent / "gunicorn"), "config.asgi:application", "-c", "python:config.gunicorn"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"Listening at: (http://[0-9.]+:\d+)", self.log.read_text(errors="replace"))
            if match:
                self.url = match.group(1)
                break
            if self.process.poll() is not None:
                fail(f"the web server exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        else:
            fail("the web server did not start")
        import httpx

        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        fail("the web server did not answer /healthz")
        return self

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.process.pid) if self.process else 0.0

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextmanager
def celery_worker(env: dict[str, str], log: Path, concurrency: int):
    """``celery -A config worker`` exactly as the Procfile runs it (prefork, CPU-count children)."""
    command = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel",
        "WARNING",
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"rivya-bench-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- load ------------------------------------------------------------------------------

WRK_POST = """
wrk.method = "POST"
wrk.body = '{"model": "bench-noop", "input": {"prompt": "nothing at all"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str, *, seconds: float, connections: int, server: Server, secret: str | None = None, post: bool = False
) -> dict[str, Any]:
    """One ``wrk`` run: requests/s, latency percentiles, errors, and who used the CPU."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if secret:
        command += ["-H", f"Authorization: Bearer {secret}"]
    script = None
    if post:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(WRK_POST)
        script.close()
        command += ["-s", script.name]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server.cpu_seconds()
    started = time.monotonic()
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    wall = time.monotonic() - started
    server_cpu = server.cpu_seconds() - server_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if script:
        os.unlink(script.name)
    out = done.stdout
    # wrk pads a one-letter unit ("1.20s") with a trailing space: a P99 of a second or more.
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    loadgen_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    return {
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        # wrk prints no distribution when no request finished in the run (a cold server under load).
        "p50_ms": _ms(latency["50"]) if "50" in latency else float("nan"),
        "p99_ms": _ms(latency["99"]) if "99" in latency else float("nan"),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
        "loadgen_cpu_pct": round(100 * loadgen_cpu / wall, 1),
        "server_cpu_pct": round(100 * server_cpu / wall, 1),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms", "loadgen_cpu_pct", "server_cpu_pct")
    merged = {key: round(statistics.median(run[key] for run in runs), 2) for key in keys}
    merged["errors"] = sum(run["errors"] for run in runs)
    merged["rounds"] = [round(run["rps"], 1) for run in runs]
    return merged


def route_available(base: str, secret: str, method: str, path: str) -> bool:
    import httpx

    response = httpx.request(method, base + path, headers={"Authorization": f"Bearer {secret}"}, json=None, timeout=10)
    if response.status_code != 404:
        return True
    try:
        return response.json()["error"]["code"] != "unknown_route"
    except (ValueError, KeyError, TypeError):
        return True


# --- profile ---------------------------------------------------------------------------


def profile(server: Server, url: str, secret: str | None, seconds: int, out: Path) -> list[dict[str, Any]]:
    """py-spy on one web worker under load; the functions taking the most samples (inclusive)."""
    pid = server.worker_pids()[0]
    raw = out.with_suffix(".txt")
    spy = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "py-spy"),
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    wrk(url, seconds=seconds, connections=16, server=server, secret=secret)
    spy.wait(30)
    if not raw.exists():
        return []
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        seen = set()
        for frame in stack.split(";"):
            name = re.sub(r" \(.*?/(site-packages|rivya_\w+|config|bench)/", r" (\1/", frame)
            if name in seen:
                continue
            seen.add(name)
            inclusive[name] = inclusive.get(name, 0) + int(count)
    interesting = [
        (name, n)
        for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])
        if not name.startswith(("<module>", "run (", "_serve", "serve (", "run_forever", "_run_once", "_run ("))
    ]
    return [{"frame": name, "share": round(n / total, 3)} for name, n in interesting[:25]] if total else []


# --- background work -------------------------------------------------------------------


XACTS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
# What one connection of the bench's own adds: PostgreSQL counts a new session's login (its
# authentication's catalog reads) as a transaction, and then each read. The worker's logins are
# counted as its work: a connection per job would show as one more transaction a job.
LOGIN = 1


def database_transactions(dsn: str) -> int:
    """This database's committed and rolled-back transactions so far, this connection's login and
    read included.

    A new connection each time: a backend's counts reach the view when it exits (or after
    it has been idle for a while), so closing this one makes its read visible to the next.
    """
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute(XACTS).fetchone()[0]) + LOGIN + 1


def settled_transactions(dsn: str, seconds: float = 12.0) -> int:
    """The count once every idle backend has reported (PostgreSQL flushes an idle one within 10 s)."""
    time.sleep(seconds)
    return database_transactions(dsn)


def purge_queue(env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "-m", "celery", "-A", "config", "purge", "-f"], cwd=ROOT, env=env, capture_output=True)


def raw_celery_noops(env: dict[str, str], count: int, log: Path, concurrency: int) -> dict[str, Any]:
    import redis

    from bench.tasks import DONE_KEY, noop_task

    client = redis.Redis.from_url(env["REDIS_URL"])
    client.delete(DONE_KEY)
    started = time.monotonic()
    for _ in range(count):
        noop_task.delay()
    enqueue_rate = count / (time.monotonic() - started)
    before = settled_transactions(env["DATABASE_URL"])
    with celery_worker(env, log, concurrency):
        deadline = time.monotonic() + 300
        while client.llen(DONE_KEY) < count:
            if time.monotonic() > deadline:
                return {"error": f"only {client.llen(DONE_KEY)}/{count} no-ops ran"}
            time.sleep(0.2)
    time.sleep(1)  # the worker's backends report as they exit
    transactions = database_transactions(env["DATABASE_URL"]) - before - LOGIN - 1
    stamps = sorted(float(x) for x in client.lrange(DONE_KEY, 0, -1))
    client.delete(DONE_KEY)
    return {
        "count": count,
        "per_s": round((count - 1) / (stamps[-1] - stamps[0]), 1),
        "enqueue_per_s": round(enqueue_rate, 1),
        "transactions_per_task": round(transactions / count, 2),
    }


def job_floor(env: dict[str, str], count: int, log: Path, concurrency: int) -> dict[str, Any]:
    """The no-op generations' floor (``bench/job_floor.py``): a raw Celery task making a no-op
    generation's round trips and nothing else, queued first and drained by the same worker command."""
    import psycopg

    from bench.job_floor import FINISHED, job_floor_task, prepare

    ids = prepare(env["DATABASE_URL"], count)
    for row_id in ids:
        job_floor_task.delay(row_id)
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn, celery_worker(env, log, concurrency):
        deadline = time.monotonic() + 300
        while (done := conn.execute(FINISHED, [ids]).fetchone())[0] < count:
            if time.monotonic() > deadline:
                return {"error": f"only {done[0]}/{count} floor jobs finished"}
            time.sleep(0.2)
    return {"count": count, "per_s": round((count - 1) / (done[2] - done[1]).total_seconds(), 1)}


def noop_generations(env: dict[str, str], base: str, secret: str, count: int, log: Path, concurrency: int) -> dict:
    """Submit ``count`` no-op generations over HTTP, then drain them with a fresh worker, timed from the DB."""
    import asyncio

    import httpx
    import psycopg

    async def submit() -> list[str]:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as c:
            semaphore = asyncio.Semaphore(16)

            async def one(i: int) -> str:
                async with semaphore:
                    r = await c.post("/api/v1/generations", json={"model": "bench-noop", "input": {"prompt": f"n{i}"}})
                    r.raise_for_status()
                    return r.json()["id"]

            return await asyncio.gather(*(one(i) for i in range(count)))

    ids = asyncio.run(submit())
    # Transactions from the worker's start to its exit (pg_stat_database), less this bench's polls.
    before, polls = settled_transactions(env["DATABASE_URL"]), 0
    # Not prepared: psycopg's PREPARE (after five executions) would be a transaction of its own.
    with psycopg.connect(env["DATABASE_URL"], prepare_threshold=None) as conn, celery_worker(env, log, concurrency):
        deadline = time.monotonic() + 600
        while True:
            polls += 1
            done = conn.execute(
                "SELECT count(*), min(completed_at), max(completed_at), count(*) FILTER (WHERE status = 'succeeded') "
                "FROM rivya_api_generationtask WHERE public_id = ANY(%s) AND completed_at IS NOT NULL",
                [ids],
            ).fetchone()
            conn.commit()
            if done[0] >= count:
                break
            if time.monotonic() > deadline:
                return {"error": f"only {done[0]}/{count} generations finished"}
            time.sleep(0.5)
    time.sleep(1)  # the worker's backends report as they exit
    # Less the last read's own connection and the poller's (its login and its reads).
    transactions = database_transactions(env["DATABASE_URL"]) - before - LOGIN - 1 - LOGIN - polls
    first, last, succeeded = done[1], done[2], done[3]
    per_s = round((count - 1) / (last - first).total_seconds(), 1)
    return {
        "count": count,
        "succeeded": succeeded,
        "per_s": per_s,
        "transactions": transactions,
        "transactions_per_job": round(transactions / count, 2),
    }


def transactions_row(results: dict[str, Any]) -> dict:
    long, short = results.get("noop_generations", {}), results.get("noop_generations_short", {})
    per_job = marginal_transactions(long, short)
    whole = long.get("transactions_per_job")
    raw_x = results["raw_celery_noops"].get("transactions_per_task")
    measured = NOT_AVAILABLE
    if per_job is not None:
        measured = (
            f"{per_job}/job ({long['count']} jobs' count less {short['count']} jobs', over the difference: "
            f"{whole}/job over the whole {long['count']}-job drain, the worker's start-up included)"
        )
    return row(
        "(2) PostgreSQL transactions per no-op generation in the worker (pg_stat_database; issue 25: ≤ 3 a job)",
        measured,
        f"{raw_x}/task (raw Celery no-ops)",
        None,
        "≤ 3",
        None if per_job is None else per_job <= 3,
    )


def marginal_transactions(long: dict[str, Any], short: dict[str, Any]) -> float | None:
    """Transactions a job takes, less the worker's start-up: two drains' counts differ by their jobs'.

    A whole drain's count includes what each new worker process does once (its connections' time
    zone, the pool's first check, the cold first job's progress write); the difference between a
    long and a short drain, each with a fresh worker, leaves only what each further job adds.
    """
    if "transactions" not in long or "transactions" not in short or long["count"] == short["count"]:
        return None
    return round((long["transactions"] - short["transactions"]) / (long["count"] - short["count"]), 2)


# --- sub-benchmarks --------------------------------------------------------------------


def sub_benchmark(script: str, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any] | str:
    """Run another issue's benchmark script; its last stdout line is its JSON result."""
    path = ROOT / "bench" / script
    if not path.exists():
        return NOT_AVAILABLE
    # Its own process group, so a timeout stops the script and every worker it started.
    process = subprocess.Popen([PYTHON, str(path), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        return f"timed out after {timeout:.0f}s"
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return f"failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"


# --- table -----------------------------------------------------------------------------


def row(name: str, measured: Any, baseline: Any, ratio: float | None, target: str, met: bool | None) -> dict:
    return {"figure": name, "measured": measured, "baseline": baseline, "ratio": ratio, "target": target, "met": met}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def print_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_gib']} GiB; Linux {info['kernel']}; "
        f"Python {info['python']}, Django {info['django']}, PostgreSQL {info['postgresql']}, Redis {info['redis']} "
        f"(RTT {info['redis_rtt_ms']} ms); load {info['load_generator']}; load average at start "
        f"{info['load_average_at_start']}; {info['date']}",
        "",
        "| # | figure | measured | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, start=1):
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        lines.append(
            f"| {i} | {r['figure']} | {r['measured']} | {r['baseline']} | "
            f"{'–' if r['ratio'] is None else r['ratio']} | {r['target']} | {met} |"
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# --- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8, help="length of one measured HTTP round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per HTTP pair")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=300, help="no-op jobs per background phase")
    parser.add_argument("--quick", action="store_true", help="short rounds, no sub-benchmarks (smoke run)")
    parser.add_argument(
        "--chat-only",
        action="store_true",
        help="only issue 25's chat rows (smoke sizes with --quick); prints the table, writes var/bench/chat.json",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.jobs = 3, 1, 60

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rivya_bench")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DEBUG="false",
        SECRET_KEY=env.get("SECRET_KEY") or secrets.token_urlsafe(50),
        LOG_LEVEL="WARNING",  # one access line per request would cost the server more than the view
        PYTHONPATH=str(ROOT),
        RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS="true",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.update(env)
    ensure_database(env["DATABASE_URL"])
    ensure_redis(env["REDIS_URL"])
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    boot = subprocess.run(
        [*manage, "rivya_bootstrap", "--username", "bench", "--credits", "100000000"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if boot.returncode != 0:
        boot = subprocess.run(
            [*manage, "rivya_bootstrap", "--username", "bench"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    secret = boot.stdout.strip().splitlines()[-1]

    import django

    django.setup()
    info = machine()
    say(f"machine: {info['cpu']} x{info['cpus']}; load average {info['load_average_at_start']}")
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    if args.chat_only:
        say("chat (issue 25): bench/chat_stream.py overhead --config production, bench/chat_waves.py suite")
        subs = run_chat_targets(sub_benchmark, env, quick=args.quick)
        (logs / "chat.json").write_text(json.dumps(subs, indent=2, default=str) + "\n")
        print_table(chat_target_rows(subs), info)
        return
    workers = os.cpu_count() or 2
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"machine": info, "settings": vars(args), "web_workers": workers}
    http = results["http"] = {}
    c, s = args.connections, args.seconds

    with Server(env, logs / "web.log", workers) as server:
        base = server.url
        has_credits = route_available(base, secret, "GET", "/api/v1/credits")
        has_generations = route_available(base, secret, "POST", "/api/v1/generations")
        # Until /credits lands: the files list cut to one object, so the stand-in does what /credits
        # does (key auth, rate limit, one indexed read, one small object) whatever the account holds.
        authenticated = "/api/v1/credits" if has_credits else "/api/v1/files?limit=1"
        say(f"server {base} ({workers} workers); calibrating and warming up")
        # Warm-up (imports, pools, caches); wrk's own CPU is measured in every round below.
        for path in ("/bench/hello", authenticated, "/bench/floor"):
            wrk(base + path, seconds=2, connections=c, server=server, secret=secret)
        pairs: dict[str, list[dict[str, Any]]] = {"hello": [], "auth": [], "floor": []}
        for r in range(args.rounds):
            say(f"HTTP round {r + 1}/{args.rounds}")
            pairs["hello"].append(wrk(base + "/bench/hello", seconds=s, connections=c, server=server))
            pairs["auth"].append(wrk(base + authenticated, seconds=s, connections=c, server=server, secret=secret))
            pairs["floor"].append(wrk(base + "/bench/floor", seconds=s, connections=c, server=server))
        http["hello"] = median_run(pairs["hello"])
        http["authenticated_get"] = {"path": authenticated, **median_run(pairs["auth"])}
        http["floor"] = median_run(pairs["floor"])
        if has_generations:
            say("POST /api/v1/generations")
            purge_queue(env)
            posts = [
                wrk(base + "/api/v1/generations", seconds=s, connections=c, server=server, secret=secret, post=True)
                for _ in range(max(1, args.rounds - 1))
            ]
            http["post_generations"] = median_run(posts)
            purge_queue(env)
        say("profiling the authenticated GET (py-spy, one worker)")
        results["profile_authenticated_get"] = profile(server, base + authenticated, secret, 5, logs / "profile")
        if has_generations:
            say(f"{args.jobs} no-op generations end to end")
            purge_queue(env)
            results["noop_generations"] = noop_generations(
                env, base, secret, args.jobs, logs / "worker-gen.log", workers
            )
            short = max(1, args.jobs // 3)
            say(f"{short} no-op generations (a short drain: the worker's start-up, for transactions per job)")
            purge_queue(env)
            results["noop_generations_short"] = noop_generations(
                env, base, secret, short, logs / "worker-gen-short.log", workers
            )
    say(f"{args.jobs} raw Celery no-op tasks")
    purge_queue(env)
    results["raw_celery_noops"] = raw_celery_noops(env, args.jobs, logs / "worker-noop.log", workers)
    purge_queue(env)
    say(f"{args.jobs} floor jobs (bench/job_floor.py: a no-op generation's round trips in a raw Celery task)")
    results["job_floor"] = job_floor(env, args.jobs, logs / "worker-floor.log", workers)
    purge_queue(env)

    say("pooling off")
    with Server({**env, "RIVYA_BENCH_DB_POOL": "off"}, logs / "web-nopool.log", workers) as server:
        wrk(server.url + authenticated, seconds=2, connections=c, server=server, secret=secret)
        http["authenticated_get_pool_off"] = median_run(
            [
                wrk(server.url + authenticated, seconds=s, connections=c, server=server, secret=secret)
                for _ in range(max(1, args.rounds - 1))
            ]
        )

    subs = results["sub_benchmarks"] = {}
    if not args.quick:
        say("ledger: bench/ledger_reserve.py")
        subs["ledger_reserve"] = sub_benchmark("ledger_reserve.py", ["--json"], env, 240)
        say("webhooks: bench/webhook_delivery.py (throughput: prefork, 2 children per CPU)")
        children = str(2 * (os.cpu_count() or 1))
        subs["webhook_delivery"] = sub_benchmark(
            "webhook_delivery.py",
            ["--pool", "prefork", "--concurrency", children, "--deliveries", "1500", "--noops", "1500"],
            env,
            420,
        )
        say("webhooks: bench/webhook_delivery.py (slow endpoints: threads pool)")
        subs["webhook_isolation"] = sub_benchmark(
            "webhook_delivery.py",
            [
                "--pool",
                "threads",
                "--concurrency",
                "64",
                "--deliveries",
                "500",
                "--noops",
                "500",
                "--slow-share",
                "0.1",
                "--steady-rate",
                "10",
                "--steady-seconds",
                "10",
            ],
            env,
            420,
        )
        say("chat: bench/chat_stream.py")
        # 200 turns, as the chat-streams issue specifies: about 10 minutes of the run.
        subs["chat_stream"] = sub_benchmark("chat_stream.py", ["all", "--json", "--turns", "200"], env, 1200)
        say("chat (issue 25): production overhead; fast, many and burst waves in both configurations")
        subs.update(run_chat_targets(sub_benchmark, env, quick=False))

    # --- rows ---
    hello, auth = http["hello"], http["authenticated_get"]
    label = (
        "GET /api/v1/credits" if has_credits else "GET /api/v1/files?limit=1 (STAND-IN: /credits is not in this build)"
    )
    fmt = "{rps:.0f} req/s, P99 {p99_ms:.1f} ms".format
    rows.append(
        row(
            f"(1) {label} throughput vs bare DRF hello",
            fmt(**auth),
            fmt(**hello),
            ratio(auth["rps"], hello["rps"]),
            "≥ 0.5",
            (ratio(auth["rps"], hello["rps"]) or 0) >= 0.5,
        )
    )
    per_cpu = {k: v["rps"] / max(v["server_cpu_pct"] / 100, 0.01) for k, v in (("auth", auth), ("hello", hello))}
    cpu_ratio = ratio(per_cpu["auth"], per_cpu["hello"])
    rows.append(
        row(
            "(1) same, per server CPU-second (robust on a shared machine)",
            f"{per_cpu['auth']:.0f} req/CPU-s",
            f"{per_cpu['hello']:.0f} req/CPU-s",
            cpu_ratio,
            "≥ 0.5",
            (cpu_ratio or 0) >= 0.5,
        )
    )
    rows.append(
        row(
            "(1) same, P99 latency",
            f"{auth['p99_ms']:.1f} ms",
            f"{hello['p99_ms']:.1f} ms",
            ratio(auth["p99_ms"], hello["p99_ms"]),
            "≤ 2",
            (ratio(auth["p99_ms"], hello["p99_ms"]) or 9) <= 2,
        )
    )
    floor = http["floor"]
    rows.append(
        row(
            "(1) floor: the bare DRF hello plus the GET's round trips (the key's cache MGET with the rate "
            "limit's INCR, one indexed SELECT) and nothing else, vs the hello",
            f"{fmt(**floor)}; the GET reaches {ratio(auth['rps'], floor['rps'])}× of it",
            fmt(**hello),
            ratio(floor["rps"], hello["rps"]),
            "report (bounds the row above)",
            None,
        )
    )
    off = http["authenticated_get_pool_off"]
    rows.append(
        row(
            "(1) pooling on vs off (same GET)",
            fmt(**auth),
            f"{fmt(**off)} (pool off)",
            ratio(auth["rps"], off["rps"]),
            "report",
            None,
        )
    )
    if "post_generations" in http:
        post = http["post_generations"]
        rows.append(
            row(
                "(2) POST /api/v1/generations accepted vs GET",
                f"{post['rps']:.0f} accepted/s",
                f"{auth['rps']:.0f} req/s ({auth['path']})",
                ratio(post["rps"], auth["rps"]),
                "≥ 0.35",
                (ratio(post["rps"], auth["rps"]) or 0) >= 0.35,
            )
        )
    else:
        rows.append(row("(2) POST /api/v1/generations accepted vs GET", NOT_AVAILABLE, "–", None, "≥ 0.35", None))
    raw = results["raw_celery_noops"].get("per_s")
    gen = results.get("noop_generations", {}).get("per_s")
    rows.append(
        row(
            "(2) no-op generations end to end vs raw Celery no-ops",
            f"{gen} jobs/s" if gen else NOT_AVAILABLE,
            f"{raw} tasks/s",
            ratio(gen, raw),
            "≥ 0.25",
            None if gen is None else ratio(gen, raw) >= 0.25,
        )
    )
    floor = results.get("job_floor", {}).get("per_s")
    rows.append(
        row(
            "(2) floor: a raw Celery task making a no-op generation's round trips (claim, provider process, "
            "output file, finish, live update: bench/job_floor.py) and nothing else, vs raw Celery no-ops",
            f"{floor} jobs/s; the generations reach {ratio(gen, floor)}× of it" if floor else NOT_AVAILABLE,
            f"{raw} tasks/s",
            ratio(floor, raw),
            "report (bounds the row above)",
            None,
        )
    )
    rows.append(transactions_row(results))
    chat = subs.get("chat_stream", NOT_AVAILABLE)
    if isinstance(chat, dict):
        rows.extend(chat_rows(chat["overhead"], chat["capacity"]))
    else:
        rows.append(row("(3) streamed chat overhead and capacity", chat, "–", None, "chat issue", None))
    if not args.quick:
        rows.extend(chat_target_rows(subs))
    ledger = subs.get("ledger_reserve", NOT_AVAILABLE)
    if isinstance(ledger, dict):
        rows.append(
            row(
                "(4) hot-wallet reservations/s vs a plain single-row UPDATE (64 clients)",
                ledger.get("hot_per_s"),
                ledger.get("plain_update_per_s"),
                ledger.get("hot_over_plain_update"),
                "≥ 0.8",
                ledger.get("met"),
            )
        )
        rows.append(
            row(
                "(4b) hot-wallet reservations/s through a limited key vs a plain single-row UPDATE (64 clients)",
                ledger.get("hot_limited_key_per_s"),
                ledger.get("plain_update_per_s"),
                ledger.get("hot_limited_key_over_plain_update"),
                "≥ 0.8",
                ledger.get("limited_met"),
            )
        )
    else:
        rows.append(row("(4) hot-wallet reservations", ledger, "–", None, "ledger issue", None))
    hooks = subs.get("webhook_delivery", NOT_AVAILABLE)
    if isinstance(hooks, dict):
        d, n = hooks.get("signed_deliveries_per_s"), hooks.get("noop_tasks_per_s")
        # CPU per delivery is the robust figure on a shared machine: 2 CPUs / its sum is the ceiling.
        cpu = hooks.get("cpu_ms_per_delivery") or {}
        cpu_text = ", ".join(f"{name} {ms}" for name, ms in cpu.items())
        rows.append(
            row(
                f"(5) signed webhook deliveries/s, one worker (prefork, {hooks.get('concurrency')} children)",
                f"{d}/s" + (f" (CPU ms a delivery: {cpu_text})" if cpu_text else ""),
                f"{n}/s raw no-ops",
                ratio(d, n),
                "≥ 500/s (issue 25, 7)",
                None if not d else d >= 500,
            )
        )
    else:
        rows.append(row("(5) signed webhook deliveries", hooks, "–", None, "≥ 500/s (issue 25, 7)", None))
    isolation = subs.get("webhook_isolation", NOT_AVAILABLE)
    if isinstance(isolation, dict):
        healthy, slow = isolation.get("steady_all_healthy_ms", {}), isolation.get("steady_with_slow_ms", {})
        hp, sp = healthy.get("p99"), slow.get("p99")
        rows.append(
            row(
                "(5) healthy endpoints' P99 delay, 10% endpoints timing out vs all healthy (threads pool, 64)",
                f"{sp:.0f} ms" if sp else "–",
                f"{hp:.0f} ms" if hp else "–",
                ratio(sp, hp),
                "≤ 2",
                None if not (sp and hp) else ratio(sp, hp) <= 2,
            )
        )
        rows.append(
            row(
                "(5) same worker's signed deliveries/s (threads pool, 64)",
                f"{isolation.get('signed_deliveries_per_s')}/s",
                f"{isolation.get('noop_tasks_per_s')}/s raw no-ops",
                ratio(isolation.get("signed_deliveries_per_s"), isolation.get("noop_tasks_per_s")),
                "report",
                None,
            )
        )
    else:
        rows.append(row("(5) healthy endpoints' P99 delay with slow endpoints", isolation, "–", None, "≤ 2", None))
    rows.append(
        row(
            "load generator CPU (median of rounds, % of one core)",
            f"{auth['loadgen_cpu_pct']}% (GET), {hello['loadgen_cpu_pct']}% (hello)",
            f"server {auth['server_cpu_pct']}% / {hello['server_cpu_pct']}% of {workers * 100}%",
            None,
            "well under the server's",
            auth["loadgen_cpu_pct"] < auth["server_cpu_pct"] / 2,
        )
    )
    results["rows"] = rows
    results["table"] = print_table(rows, info)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    say(f"wrote {RESULTS.relative_to(ROOT)}")
    if not args.quick:
        table_update(results["table"])
        if readme_update(summary_table(rows, info)):
            say("updated the summary in README.md")


def chat_rows(over: dict[str, Any], cap: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (3): bench/chat_stream.py's figures against the chat-streams issue's targets."""
    ms = "{:.1f} ms".format
    clean = over["merged"] == 0 and over["dropped"] == 0 and over["errors"] == 0
    rss = f"RSS {cap['rss_start_mb']:.0f} → {cap['rss_peak_mb']:.0f} MB" if cap.get("rss_start_mb") else "RSS –"
    if cap.get("rss_holding_first_mb"):
        rss += f" ({cap['rss_holding_first_mb']:.0f} → {cap['rss_holding_last_mb']:.0f} MB while all are open)"
    return [
        row(f"(3) streamed chat: added TTFT P50 (gateway − direct, paired, {over['turns']} turns)",
            f"+{over['added_ttft_p50_ms']:.1f} ms", f"direct TTFT {ms(over['direct_ttft_p50_ms'])}",
            None, "≤ +8 ms", over["added_ttft_p50_ms"] <= 8),
        row("(3) same, added TTFT P99", f"+{over['added_ttft_p99_ms']:.1f} ms", "–", None, "≤ +20 ms",
            over["added_ttft_p99_ms"] <= 20),
        row("(3) added inter-chunk gap P99 (20 ms pace)", f"{over['added_gap_p99_ms']:+.1f} ms",
            f"direct P99 {ms(over['direct_gap_p99_ms'])}", None, "≤ +2 ms", over["added_gap_p99_ms"] <= 2),
        row("(3) chunks merged / dropped, turn errors", f"{over['merged']} / {over['dropped']}, {over['errors']}",
            "–", None, "0", clean),
        row(f"(3) capacity: {cap['streams']} open streams on one web process (1 s pace)",
            f"{cap['completed']} completed; added gap P99 {cap['holding_added_gap_p99_ms']:+.1f} ms while all are "
            f"open ({cap['holding_seconds']:.0f} s), {cap['added_gap_p99_ms']:+.1f} ms over the whole run; {rss}",
            f"TTFT P50 {cap['ttft_p50_ms']:.0f} ms while {cap['streams']} open in 25 s", None, "500, ≤ +20 ms",
            cap["completed"] >= 500 and cap["holding_added_gap_p99_ms"] <= 20),
    ]  # fmt: skip


def table_update(table: str) -> None:
    """Put the table between the bench-table markers of docs/benchmarks.md (it shows the latest full run)."""
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text()
    start, end = "<!-- bench-table -->", "<!-- /bench-table -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        page.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")
        say("updated the table in docs/benchmarks.md")


if __name__ == "__main__":
    main()
