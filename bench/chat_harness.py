"""The processes of a chat benchmark: the stand-in upstream, the gateway, where they run and what they cost.

Two configurations of the gateway (one uvicorn process, the project's settings):

- ``embedded``: a fresh SQLite database and no Redis, as ``make run``;
- ``production``: PostgreSQL and Redis from ``DATABASE_URL`` / ``REDIS_URL``, as deployed: the
  cache and rate limiter on Redis, and every turn's events mirrored to a Redis stream for resume
  (``CHAT_STREAM_REDIS_URL`` follows ``REDIS_URL``).

In both the per-key rate limiter runs, as in production, with a limit no load here reaches
(``RIVYA_API_RATE_LIMIT=100000000/min``, as ``bench/settings.py`` does for the other rows): every
turn pays the limiter's counter (a Redis round trip in production) and none is refused.

CPU placement: on a machine with two or more CPUs the gateway is pinned to the first and
everything else this harness starts (upstream, load generators, the follower) to the rest, so
the gateway's CPU-seconds (``/proc/<pid>/stat``, every thread) are its own and the client's
cannot crowd it. In production the machine's PostgreSQL and Redis processes are moved to the
other CPUs too for the run (``BENCH_PIN_SERVICES=false`` leaves them), as a database on another
host would be, and put back afterwards; the gateway's run-queue wait (``/proc/<pid>/task/*/schedstat``)
shows whether it still waited for its CPU.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CHAT_STREAM = ROOT / "bench" / "chat_stream.py"
CONFIGS = ("embedded", "production")
# What makes a server log "hold an error": a logged error, a traceback, a turn whose events missed Redis.
LOG_ERROR = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|Could not mirror")
CPUS = sorted(os.sched_getaffinity(0))  # before any harness narrows this process's own
SERVICES = {"postgres", "redis-server"}  # process names moved off the gateway's CPU in production


def cpu_sets() -> tuple[set[int] | None, set[int] | None]:
    """(the gateway's CPUs, everyone else's); (None, None) where there is only one CPU."""
    if len(CPUS) < 2:
        return None, None
    return {CPUS[0]}, set(CPUS[1:])


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of process ``pid`` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` alive now have spent runnable but not running."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


def service_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in SERVICES:
                pids.append(int(comm.parent.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return pids


def pin_services(cpus: set[int]) -> dict[int, set[int]]:
    """Move the machine's PostgreSQL and Redis processes to ``cpus``; returns what to put back."""
    moved: dict[int, set[int]] = {}
    for pid in service_pids():
        try:
            before = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, cpus)
        except OSError:  # gone, or not ours to move
            continue
        moved[pid] = before
    return moved


def unpin_services(moved: dict[int, set[int]]) -> None:
    """Put back what ``pin_services`` moved; backends started meanwhile inherited the pin: every CPU."""
    if not moved:
        return
    for pid in service_pids():
        try:
            os.sched_setaffinity(pid, moved.get(pid, set(CPUS)))
        except OSError:  # ended meanwhile (a backend whose connection closed)
            continue


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def gateway_env(config: str, workdir: Path, upstream_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "bench-only",
        "LOG_LEVEL": "WARNING",
        # The limiter runs (its counter is part of every turn's cost) and never says no.
        "RIVYA_API_RATE_LIMIT": "100000000/min",
        "RIVYA_IN_PROCESS_BEAT": "false",
        "RIVYA_UPSTREAM_CHAT_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "RIVYA_UPSTREAM_CHAT_API_KEY": "bench",
        "RIVYA_UPSTREAM_CHAT_MODEL": "bench",
    }
    if config == "production":
        if not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")):
            raise SystemExit("--config production needs DATABASE_URL (PostgreSQL) and REDIS_URL")
        return env
    env["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    env.pop("REDIS_URL", None)
    if "BENCH_REDIS_URL" in os.environ:
        env["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
    return env


def setup_database(env: dict, config: str) -> str:
    """Migrate the database and create an account with credits and a key; returns the key."""
    # A shared PostgreSQL database keeps earlier runs' accounts: a new name each run.
    name = "bench" if config == "embedded" else f"bench-{os.getpid()}-{time.time_ns()}"
    script = (
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from tests.factories import account_create\n"
        "from rivya_api.keys.services import api_key_create\n"
        "from rivya_billing.services import credits_grant\n"
        f"account = account_create({name!r})\n"
        "credits_grant(account=account, amount=10**12, reference='bench-grant')\n"
        "print(api_key_create(account=account, name='bench')[1])\n"
    )
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def gateway_command(port: int) -> list[str]:
    return [
        PYTHON, "-m", "uvicorn", os.environ.get("BENCH_ASGI_APP", "config.asgi:application"),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
        "--loop", "uvloop", "--http", "httptools", "--backlog", "4096",
    ]  # fmt: skip


class Harness:
    """Upstream and gateway of one run; ``with Harness(...) as h:`` starts both and stops them."""

    def __init__(
        self, config: str, *, interval: float, chunks: int, first_delay: float = 0.2, floor: bool = False
    ) -> None:
        assert config in CONFIGS
        self.config = config
        self.interval, self.chunks, self.first_delay = interval, chunks, first_delay
        self.workdir = Path(tempfile.mkdtemp(prefix=f"rivya-bench-{config}-"))
        self.gateway_cpus, self.other_cpus = cpu_sets()
        self.upstream_port, self.gateway_port = free_port(), free_port()
        self.env = gateway_env(config, self.workdir, self.upstream_port)
        if floor:  # bench.urls adds POST /bench/turn-floor (bench/turn_floor.py) beside the project's URLs
            self.env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        self.procs: list[subprocess.Popen] = []
        self.key = ""
        self.log = self.workdir / "gateway.log"
        self.services_moved: dict[int, set[int]] = {}

    def __enter__(self) -> Harness:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        if self.other_cpus:  # this process and every child but the gateway
            os.sched_setaffinity(0, self.other_cpus)
            if self.config == "production" and os.environ.get("BENCH_PIN_SERVICES", "true") != "false":
                self.services_moved = pin_services(self.other_cpus)
        self.key = setup_database(self.env, self.config)
        self.upstream = self.spawn(
            [PYTHON, str(CHAT_STREAM), "upstream", "--port", str(self.upstream_port), "--interval",
             str(self.interval), "--chunks", str(self.chunks), "--first-delay", str(self.first_delay)],
        )  # fmt: skip
        self.gateway = self.spawn(gateway_command(self.gateway_port), cpus=self.gateway_cpus, log=self.log)
        wait_listening(self.upstream_port)
        wait_listening(self.gateway_port)

    def spawn(self, command: list[str], *, cpus: set[int] | None = None, log: Path | None = None):
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        sink = log.open("w") if log else None  # the gateway's log: scanned for errors afterwards
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stderr=sink, preexec_fn=pin)
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc: object) -> None:
        os.sched_setaffinity(0, CPUS)
        unpin_services(self.services_moved)
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # --- what it cost, what it logged ---------------------------------------------------

    def sample(self) -> tuple[float, float, float, float]:
        """(perf_counter, gateway CPU-s, gateway RSS MB, upstream CPU-s)."""
        pid = self.gateway.pid
        return time.perf_counter(), cpu_seconds(pid), rss_mb(pid), cpu_seconds(self.upstream.pid)

    def runqueue_wait(self) -> float:
        """Seconds the gateway's threads have waited for a CPU so far."""
        return runqueue_seconds(self.gateway.pid)

    def log_errors(self, log: Path | None = None) -> dict:
        """Error lines in the gateway's log (or ``log``) so far; mirror failures counted apart."""
        text = (log or self.log).read_text(errors="replace")
        lines = [line for line in text.splitlines() if LOG_ERROR.search(line)]
        return {
            "error_lines": len(lines),
            "mirror_errors": sum("Could not mirror" in line for line in lines),
            "first": [line[:300] for line in lines[:3]],
        }

    def placement(self) -> str:
        if not self.gateway_cpus:
            return "not pinned (one CPU)"
        where = f"gateway on CPU {sorted(self.gateway_cpus)}, upstream and clients on CPU {sorted(self.other_cpus)}"
        if self.services_moved:
            where += f" with PostgreSQL and Redis ({len(self.services_moved)} processes)"
        return where

    def start_follower_gateway(self) -> tuple[int, Path]:
        """A second gateway process on the same database and Redis: it can only resume from Redis."""
        port, log = free_port(), self.workdir / "follower.log"
        self.spawn(gateway_command(port), log=log)
        wait_listening(port)
        return port, log
