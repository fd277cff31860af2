"""Benchmark: sustained signed webhook deliveries per second for one Celery worker.

Run with a PostgreSQL database and this machine's Redis (both required)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rivya_webhooks \\
    REDIS_URL=redis://127.0.0.1:6379/3 \\
    .venv/bin/python bench/webhook_delivery.py [--deliveries 3000] [--pool threads] [--concurrency 64] \\
        [--slow-share 0.1 --steady-rate 20 --steady-seconds 15]

What it does, in one run on the same broker:

1. starts a local receiver (uvicorn, 127.0.0.1, OS-assigned port) in a child process
   that verifies every request with ``standardwebhooks.Webhook(secret).verify``;
2. starts one ``celery -A config worker`` (plus this module, for the no-op task);
3. **raw Celery**: queues N no-op tasks while the worker's consumer is paused, resumes
   it and times the drain: the broker-and-worker ceiling on this machine;
4. **deliveries**: publishes N events (one delivery each, over 10 endpoints) while the
   consumer is paused, resumes it and times until every delivery has succeeded —
   claim, sign, POST, record, for each;
5. **mixed** (``--slow-share 0.1``): a steady publish rate where 10% of endpoints time
   out, against the same rate with every endpoint healthy, and compares the healthy
   endpoints' P50/P99 delay from publish to success.

Prints one line per figure. It creates its own account and deletes its events before
each phase; it never touches any other data. Everything it starts is stopped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The worker imports this module (``-I bench.webhook_delivery``) for the no-op task,
# so everything that needs Django happens inside functions.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from celery import shared_task  # noqa: E402

NOOP_COUNTER = "rivya-bench:noop"
BENCH_TYPE = "bench.delivered"


@shared_task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """The no-op baseline: one Redis INCR so the bench can count completions."""
    _redis().incr(NOOP_COUNTER)


_redis_client = None


def _redis():  # type: ignore[no-untyped-def]
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _redis_client


# --- The receiver ---------------------------------------------------------------------


def _receiver_main(sock: socket.socket, secrets: dict[str, str], slow: float, counters) -> None:  # type: ignore[no-untyped-def]
    import uvicorn
    from standardwebhooks import Webhook

    verifiers = {path: Webhook(secret) for path, secret in secrets.items()}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        try:
            verifiers[path].verify(body, headers)
            counters[0] += 1
        except Exception:  # noqa: BLE001 (any failure counts as unverified)
            counters[1] += 1
        if path.startswith("/slow"):
            await asyncio.sleep(slow)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", loop="uvloop", http="httptools")
    uvicorn.Server(config).run(sockets=[sock])


class ReceiverProcess:
    """Binds its socket at once (so endpoints can name the port); serves from ``with``."""

    def __init__(self, slow: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.slow = slow
        self.secrets: dict[str, str] = {}
        self.context = multiprocessing.get_context("fork")
        self.counters = self.context.Array("q", [0, 0], lock=False)
        self.process = None

    def __enter__(self) -> ReceiverProcess:
        self.process = self.context.Process(
            target=_receiver_main, args=(self.sock, self.secrets, self.slow, self.counters), daemon=True
        )
        self.process.start()
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("receiver did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(5)
        self.sock.close()

    @property
    def verified(self) -> int:
        return self.counters[0]

    @property
    def unverified(self) -> int:
        return self.counters[1]


# --- CPU accounting -------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU-seconds of the given live processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a prefork worker's children)."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            children = Path(f"/proc/{pids[index]}/task/{pids[index]}/children").read_text().split()
        except OSError:
            children = []
        pids.extend(int(child) for child in children)
        index += 1
    return pids


def database_backends() -> list[int]:
    """PostgreSQL server processes serving this database, other than this process's own (local server only)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


class CpuMeter:
    """CPU-seconds used between ``start`` and ``stop`` by the worker (with its children), the receiver
    and this database's PostgreSQL backends (a backend opened meanwhile counts from zero)."""

    def __init__(self, worker_pid: int, receiver_pid: int) -> None:
        self.worker_pid, self.receiver_pid = worker_pid, receiver_pid

    def _sample(self) -> dict[str, dict[int, float]]:
        groups = {
            "worker": process_tree(self.worker_pid),
            "receiver": [self.receiver_pid],
            "postgres": database_backends(),
        }
        return {name: {pid: cpu_seconds([pid]) for pid in pids} for name, pids in groups.items()}

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        return {
            name: round(sum(cpu - self.before[name].get(pid, 0.0) for pid, cpu in pids.items()), 2)
            for name, pids in after.items()
        }


# --- The worker -----------------------------------------------------------------------


class Worker:
    def __init__(self, pool: str, concurrency: int) -> None:
        self.pool, self.concurrency = pool, concurrency
        self.name = f"rivya-bench-{os.getpid()}@{socket.gethostname()}"
        self.log = ROOT / "var" / f"bench-worker-{os.getpid()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        from config.celery import app

        env = {
            **os.environ,
            "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
            "DEBUG": "true",
            "LOG_LEVEL": "WARNING",
            "DATABASE_POOL_MAX_SIZE": str(max(10, self.concurrency + 4)),
        }
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-I", "bench.webhook_delivery",
            f"--pool={self.pool}", f"--concurrency={self.concurrency}", f"--hostname={self.name}",
            "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.log.read_text()[-3000:])
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise RuntimeError("worker did not start: " + self.log.read_text()[-3000:])

    def pause(self) -> None:
        from config.celery import app

        app.control.cancel_consumer("celery", destination=[self.name], reply=True)

    def resume(self) -> None:
        from config.celery import app

        app.control.add_consumer("celery", destination=[self.name], reply=True)

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


# --- Phases -----------------------------------------------------------------------------


def setup() -> None:
    import django

    os.environ["RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "true"
    os.environ["DEBUG"] = "true"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from rivya_webhooks.registry import event_type_register

    event_type_register(BENCH_TYPE, "Benchmark event.")


def bench_account():  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    from rivya_api.accounts import account_for_user

    user, _ = get_user_model().objects.get_or_create(username="rivya-bench")
    return account_for_user(user)


def reset(account) -> None:  # type: ignore[no-untyped-def]
    from rivya_webhooks.models import WebhookEndpoint, WebhookEvent

    WebhookEvent.objects.filter(account=account).delete()
    WebhookEndpoint.objects.filter(account=account).delete()


def make_endpoints(account, port: int, healthy: int, slow: int) -> tuple[list, dict[str, str]]:  # type: ignore[no-untyped-def]
    from rivya_webhooks.services import webhook_endpoint_create

    endpoints, secrets = [], {}
    for index in range(healthy + slow):
        path = f"/slow/{index}" if index >= healthy else f"/ok/{index}"
        endpoint, secret = webhook_endpoint_create(
            account=account, url=f"http://127.0.0.1:{port}{path}", event_types=[BENCH_TYPE]
        )
        endpoints.append(endpoint)
        secrets[path] = secret
    return endpoints, secrets


def publish(account, endpoints: list, count: int, batch: int = 250) -> float:  # type: ignore[no-untyped-def]
    from django.db import transaction

    from rivya_webhooks.services import webhook_event_publish

    started = time.perf_counter()
    for offset in range(0, count, batch):
        with transaction.atomic():
            for n in range(offset, min(count, offset + batch)):
                target = endpoints[n % len(endpoints)]
                webhook_event_publish(
                    account=account, type=BENCH_TYPE, data={"n": n, "task": f"task_{n:08d}"}, endpoints=[target]
                )
    return count / (time.perf_counter() - started)


def wait_succeeded(account, count: int, timeout: float) -> float:  # type: ignore[no-untyped-def]
    from rivya_webhooks.models import WebhookDelivery

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        done = WebhookDelivery.objects.filter(event__account=account, state="succeeded").count()
        if done >= count:
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError(f"only {done} of {count} deliveries succeeded within {timeout}s")


def phase_noop(worker: Worker, count: int) -> float:
    from config.celery import app

    app.loader.import_default_modules()
    redis = _redis()
    redis.delete(NOOP_COUNTER)
    worker.pause()
    time.sleep(0.5)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            noop.apply_async(producer=producer)
    worker.resume()
    started = time.perf_counter()
    while int(redis.get(NOOP_COUNTER) or 0) < count:
        if time.perf_counter() - started > 300:
            raise RuntimeError("no-op tasks did not finish")
        time.sleep(0.01)
    return count / (time.perf_counter() - started)


def phase_deliveries(  # type: ignore[no-untyped-def]
    worker: Worker, account, endpoints: list, count: int, meter: CpuMeter, per_transaction: int = 250
) -> tuple[float, float, dict]:
    """Deliveries/s, publish rate, and CPU-seconds of each process group while the deliveries ran."""
    worker.pause()
    time.sleep(0.5)
    publish_rate = publish(account, endpoints, count, batch=per_transaction)
    meter.start()
    print("# delivering", flush=True)  # a profiler can start here (the worker was idle until now)
    worker.resume()
    elapsed = wait_succeeded(account, count, timeout=600)
    return count / elapsed, publish_rate, meter.stop()


def phase_steady(account, endpoints: list, rate: float, seconds: float, timeout: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Publish ``rate`` events/s for ``seconds``, wait for the healthy deliveries, return their delays."""
    from django.db.models import F

    from rivya_webhooks.models import WebhookDelivery

    healthy = [e for e in endpoints if "/ok/" in e.url]
    total = int(rate * seconds)
    started = time.perf_counter()
    for n in range(total):
        due = started + n / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        publish(account, [endpoints[n % len(endpoints)]], 1)
    expected = sum(1 for n in range(total) if endpoints[n % len(endpoints)] in healthy)
    deadline = time.perf_counter() + timeout
    rows = WebhookDelivery.objects.filter(event__account=account, endpoint__in=healthy)
    while rows.filter(state="succeeded").count() < expected:
        if time.perf_counter() > deadline:
            break
        time.sleep(0.1)
    delays = sorted(
        (row["delay"].total_seconds() * 1000)
        for row in rows.filter(state="succeeded").annotate(delay=F("succeeded_at") - F("created_at")).values("delay")
    )
    if not delays:
        return {"count": 0, "expected": expected, "p50": float("nan"), "p99": float("nan")}
    return {
        "count": len(delays),
        "expected": expected,
        "p50": statistics.median(delays),
        "p99": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--noops", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=10)
    # Events published per transaction in the throughput phase: deliveries of one transaction to
    # one endpoint go as one batch message (up to 25); 1 measures one message per delivery.
    parser.add_argument("--per-transaction", type=int, default=250)
    # Deliveries are I/O-bound: a thread pool keeps a slow receiver from holding a whole
    # process. (prefork + Django's psycopg pool is slow: Celery closes the pool after every
    # task in prefork children, so each delivery opens a new PostgreSQL connection.)
    parser.add_argument("--pool", default="threads", choices=["prefork", "threads", "solo"])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slow-share", type=float, default=0.0, help="Also run the mixed scenario (e.g. 0.1).")
    parser.add_argument("--steady-rate", type=float, default=50.0, help="Events/s in the mixed scenario.")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set REDIS_URL and a PostgreSQL DATABASE_URL (see the module docstring).")

    setup()
    from django.conf import settings

    from rivya_webhooks.conf import webhooks_settings

    account = bench_account()
    reset(account)
    (ROOT / "var").mkdir(exist_ok=True)
    timeout = float(webhooks_settings.TIMEOUT)
    results: dict[str, object] = {
        "cpus": os.cpu_count(),
        "pool": args.pool,
        "concurrency": args.concurrency,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
    }

    # The receiver's socket first (endpoints name its port), then endpoints, then it serves.
    receiver = ReceiverProcess(slow=timeout + 5)
    slow_count = round(args.endpoints * args.slow_share)
    healthy_endpoints, secrets = make_endpoints(account, receiver.port, args.endpoints, 0)
    slow_endpoints, slow_secrets = make_endpoints(account, receiver.port, 0, slow_count)
    receiver.secrets = {**secrets, **slow_secrets}
    print(f"# receiver port {receiver.port}; endpoints {len(healthy_endpoints)} healthy, {slow_count} slow", flush=True)

    with receiver as receiver_live, Worker(args.pool, args.concurrency) as worker:
        meter = CpuMeter(worker.process.pid, receiver_live.process.pid)
        meter.start()
        results["noop_tasks_per_s"] = round(phase_noop(worker, args.noops), 1)
        # What Celery itself costs a task (the floor of a delivery sent as a message of its own).
        results["noop_worker_cpu_ms_per_task"] = round(1000 * meter.stop()["worker"] / args.noops, 3)
        print(
            f"raw celery no-op tasks/s: {results['noop_tasks_per_s']} "
            f"(worker CPU {results['noop_worker_cpu_ms_per_task']} ms a task)",
            flush=True,
        )
        reset_events(account)
        rate, publish_rate, cpu = phase_deliveries(
            worker, account, healthy_endpoints, args.deliveries, meter, args.per_transaction
        )
        results["per_transaction"] = args.per_transaction
        results["signed_deliveries_per_s"] = round(rate, 1)
        results["publish_events_per_s"] = round(publish_rate, 1)
        results["cpu_seconds"] = cpu
        results["cpu_ms_per_delivery"] = {name: round(1000 * s / args.deliveries, 3) for name, s in cpu.items()}
        results["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(f"signed deliveries/s (one worker): {results['signed_deliveries_per_s']}", flush=True)
        print(
            "CPU ms per delivery: "
            + ", ".join(f"{name} {ms}" for name, ms in results["cpu_ms_per_delivery"].items())
            + f" (load average {results['load_average'][0]})",
            flush=True,
        )
        print(f"publish (event + delivery rows + on-commit message)/s: {results['publish_events_per_s']}", flush=True)
        results["receiver_verified"] = receiver_live.verified
        results["receiver_unverified"] = receiver_live.unverified
        print(f"receiver verified {receiver_live.verified}, failed verification {receiver_live.unverified}")

        if slow_count:
            reset_events(account)
            baseline = phase_steady(
                account, healthy_endpoints, args.steady_rate, args.steady_seconds, timeout=timeout * 4
            )
            reset_events(account)
            mixed_endpoints = healthy_endpoints[: args.endpoints - slow_count] + slow_endpoints
            mixed = phase_steady(account, mixed_endpoints, args.steady_rate, args.steady_seconds, timeout=timeout * 4)
            results["steady_all_healthy_ms"] = baseline
            results["steady_with_slow_ms"] = mixed
            print(
                f"steady {args.steady_rate}/s all healthy: P50 {baseline['p50']:.0f} ms, P99 {baseline['p99']:.0f} ms "
                f"({baseline['count']}/{baseline['expected']})"
            )
            print(
                f"steady {args.steady_rate}/s with {args.slow_share:.0%} endpoints timing out: healthy P50 "
                f"{mixed['p50']:.0f} ms, P99 {mixed['p99']:.0f} ms ({mixed['count']}/{mixed['expected']})"
            )
    reset(account)
    print(json.dumps(results))


def reset_events(account) -> None:  # type: ignore[no-untyped-def]
    from rivya_webhooks.models import WebhookEvent

    WebhookEvent.objects.filter(account=account).delete()


if __name__ == "__main__":
    main()
