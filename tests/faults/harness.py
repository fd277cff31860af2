"""A private PostgreSQL, a private Redis and the production stack's processes, for fault tests.

Nothing here touches the machine's shared servers (5432, 6379): ``PostgresServer``
runs ``initdb`` into a temporary directory and ``postgres`` on a free loopback
port; ``RedisServer`` runs ``redis-server`` the same way (no persistence, like a
cache node that loses its memory on restart). ``Stack`` starts the processes of
the project's ``Procfile`` (web, Celery worker, Celery beat), each as its own
process group so a test can SIGKILL one of them, or falls back to the same three
roles with uvicorn when the Procfile is absent. Every wait is bounded; every
``stop`` ends with SIGKILL on the process group if the polite signal is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STACK_SETTINGS = "tests.faults.stack_settings"


class HarnessError(RuntimeError):
    pass


def free_port() -> int:
    """A loopback port nothing listens on right now (servers that must keep their port across restarts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries (``/usr/lib/postgresql/<major>/bin``), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def missing_tools() -> str | None:
    """Why fault tests cannot run here (None when they can)."""
    if postgres_bin() is None:
        return "needs PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    if shutil.which("redis-server") is None:
        return "needs redis-server on PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "runs as root, so needs a 'postgres' user to own the private cluster"
    return None


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; HarnessError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """The live direct children of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first), read from /proc."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    frontier.append(child)
    return found


def pid_with_local_port(port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` owns the TCP socket whose local port is ``port`` (e.g. a PostgreSQL client)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


# --- processes ----------------------------------------------------------------------------


class Process:
    """One command in its own session (process group), output appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        user: str | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.user = user
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        kwargs: dict[str, Any] = {}
        if self.user:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """``sig`` to the group, then SIGKILL to whatever of the group is left after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # children that outlived their parent too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crashed machine would."""
        self.stop(signal.SIGKILL, timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# --- PostgreSQL ---------------------------------------------------------------------------


class PostgresServer:
    """A throwaway cluster: ``initdb`` into ``root/pgdata``, ``postgres`` on 127.0.0.1:``port``, trust auth."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.port = free_port()
        self.bin = postgres_bin()
        self.user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
        self.process: Process | None = None

    def initdb(self) -> None:
        assert self.bin is not None
        for folder in (self.data, self.sockets):
            folder.mkdir(parents=True, exist_ok=True)
            if self.user:
                entry = pwd.getpwnam(self.user)
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--no-sync", "--no-instructions"])  # fmt: skip

    def _run(self, argv: list[str]) -> None:
        kwargs: dict[str, Any] = {}
        if self.user:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.root, **kwargs)
        if done.returncode != 0:
            raise HarnessError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self, timeout: float = 30) -> None:
        assert self.bin is not None
        argv = [
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockets}",
            # A crash of the server process (not the machine) loses nothing without fsync, since
            # the kernel keeps what was written; synchronous_commit stays on, or a "committed"
            # row (a webhook event already delivered) could vanish in the PostgreSQL crash test.
            "-c", "fsync=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200", "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        self.process = Process("postgres", argv, log_path=self.root / "postgres.log", cwd=self.root, user=self.user)
        self.process.start()
        wait_until(self.accepting, timeout=timeout, what=f"PostgreSQL on port {self.port}")

    def accepting(self) -> bool:
        if self.process is None or not self.process.alive():
            raise HarnessError(f"postgres exited: {self.process.log_tail() if self.process else ''}")
        try:
            with self.connect():
                return True
        except Exception:
            return False

    def stop(self, *, immediate: bool = False, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT: roll back and disconnect everyone) or immediate (SIGQUIT: like a crash)."""
        if self.process is not None:
            self.process.stop(signal.SIGQUIT if immediate else signal.SIGINT, timeout=timeout)
            self.process = None

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.url(database), connect_timeout=3, autocommit=True, **kwargs)

    def query(self, sql: str, params: Any = None, *, database: str) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str, *, template: str | None = None) -> None:
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(statement)


# --- Redis ----------------------------------------------------------------------------------


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` with no persistence: a restart starts empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: Process | None = None

    def start(self, timeout: float = 20) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no",
            "--databases", "4", "--maxclients", "1000",
        ]  # fmt: skip
        self.process = Process("redis", argv, log_path=self.root / "redis.log", cwd=self.root).start()
        wait_until(self.ping, timeout=timeout, what=f"Redis on port {self.port}")

    def ping(self) -> bool:
        import redis

        if self.process is None or not self.process.alive():
            raise HarnessError(f"redis-server exited: {self.process.log_tail() if self.process else ''}")
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGKILL if kill else signal.SIGTERM, timeout=10)
            self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(port=self.port, db=db, socket_timeout=5)


# --- the stack --------------------------------------------------------------------------------


def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """``name: command`` lines of the Procfile (empty when there is none)."""
    if not path.exists():
        return {}
    commands = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match:
            commands[match.group(1)] = match.group(2)
    return commands


class Stack:
    """The web, worker and beat processes of the production stack, on the given database and Redis.

    Commands come from the ``Procfile`` (what ``make stack`` runs) with the
    environment it documents (``BIND``, ``WEB_CONCURRENCY``, ...); without one,
    the same roles run as uvicorn with ``web_workers`` processes, ``celery -A config
    worker`` and ``celery -A config beat``. Settings are ``tests.faults.stack_settings``:
    the reference project with short heartbeats and sweeps (see there).
    """

    def __init__(
        self,
        *,
        root: Path,
        database_url: str,
        redis_url: str,
        web_workers: int = 2,
        worker_concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.web_workers = web_workers
        self.database_url = database_url
        self.redis_url = redis_url
        self.worker_name = f"rivya-faults-{os.getpid()}-{self.port}"
        media = root / "media"
        media.mkdir(exist_ok=True)
        (root / "prometheus").mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": STACK_SETTINGS,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "DEBUG": "true",  # stricter for "never a stack trace": Django's debug pages must not answer
                "SECRET_KEY": "faults-" + "k" * 50,
                "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
                "RIVYA_PUBLIC_BASE_URL": self.base_url,
                "MEDIA_ROOT": str(media),
                "PORT": str(self.port),
                "BIND": f"127.0.0.1:{self.port}",
                "WEB_CONCURRENCY": str(web_workers),
                "CELERY_WORKER_CONCURRENCY": str(worker_concurrency),
                "CELERY_WORKER_NAME": self.worker_name,
                "CELERY_BEAT_SCHEDULE_FILE": str(root / "celerybeat-schedule"),
                "PROMETHEUS_MULTIPROC_DIR": str(root / "prometheus"),
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.processes: dict[str, Process] = {}
        self.starts: dict[str, int] = {}
        commands = procfile_commands()
        self.from_procfile = bool(commands)
        if not commands:
            commands = {
                "web": f"uvicorn config.asgi:application --host 127.0.0.1 --port {self.port} "
                f"--workers {web_workers} --lifespan off --no-access-log --timeout-graceful-shutdown 5",
                "worker": f"celery -A config worker --loglevel INFO --concurrency {worker_concurrency} "
                f'--hostname "{self.worker_name}@%h"',
                "beat": f"celery -A config beat --loglevel INFO --schedule {root / 'celerybeat-schedule'}",
            }
        self.commands = commands

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 90, roles: tuple[str, ...] = ("web", "worker", "beat")) -> Stack:
        """Start ``roles`` (a stack with no worker sends nothing anywhere: webhooks stay queued)."""
        deadline = time.monotonic() + timeout
        try:
            for name in roles:
                self.start_process(name)
            self.wait_ready(deadline=deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def start_process(self, name: str, *, timeout: float | None = None) -> Process:
        """Start role ``name`` (again, after a kill: its log then goes to ``name-N.log``).

        With ``timeout``, wait until it is ready (the worker's "ready." line; the web's /readyz).
        """
        self.starts[name] = self.starts.get(name, 0) + 1
        suffix = "" if self.starts[name] == 1 else f"-{self.starts[name]}"
        argv = ["sh", "-c", "exec " + self.commands[name]]
        process = Process(name, argv, log_path=self.root / f"{name}{suffix}.log", env=self.env)
        self.processes[name] = process.start()
        if timeout is not None:
            self.wait_ready(deadline=time.monotonic() + timeout)
        return process

    def wait_ready(self, *, deadline: float) -> None:
        def ready() -> bool:
            for process in self.processes.values():
                if not process.alive():
                    raise HarnessError(f"{process.name} exited:\n{process.log_tail()}")
            try:
                response = httpx.get(self.base_url + "/readyz", timeout=5)
            except httpx.HTTPError:
                return False
            worker = self.processes.get("worker")
            return response.status_code == 200 and (worker is None or " ready." in worker.log_tail(200_000))

        wait_until(ready, timeout=max(1.0, deadline - time.monotonic()), interval=0.3, what="the stack")

    def stop(self) -> None:
        for name in ("beat", "web", "worker"):
            process = self.processes.get(name)
            if process is not None:
                process.stop(timeout=20)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults -------------------------------------------------------------------------------

    def web_worker_pids(self) -> list[int]:
        """The pids serving requests: the web master's children (gunicorn or uvicorn workers)."""
        master = self.processes["web"].pid
        return [pid for pid in children(master) if _is_server_worker(pid)]

    def worker_pids(self) -> list[int]:
        """The Celery worker's main process and its pool children."""
        main = self.processes["worker"].pid
        return [main, *descendants(main)]

    def pids(self) -> dict[str, list[int]]:
        """Every process of the stack by role (main process first): equal before and after a fault
        means nothing was restarted. A generation provider's forkserver and the children it forks
        per job (rivya_api.generations.isolation) come and go with the work, so they are left out."""
        return {
            name: [process.pid, *sorted(pid for pid in descendants(process.pid) if not _is_provider_process(pid))]
            for name, process in self.processes.items()
        }

    def log_count(self, name: str, text: str) -> int:
        """How many lines of process ``name``'s log contain ``text``."""
        try:
            return sum(text in line for line in self.processes[name].log_path.read_text(errors="replace").splitlines())
        except OSError:
            return 0

    def logs(self, chars: int = 6000) -> str:
        return "\n".join(f"--- {name}\n{p.log_tail(chars)}" for name, p in self.processes.items())

    # --- talking to it -------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``manage.py <args>`` with the stack's environment (its database, Redis and settings)."""
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def bootstrap(self, username: str, *, credits: int) -> str:
        """A funded account and a key for it (``rivya_bootstrap``); returns the secret."""
        done = self.manage("rivya_bootstrap", "--username", username, "--credits", str(credits))
        if done.returncode != 0:
            raise HarnessError(f"rivya_bootstrap failed: {done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the stack's database in its own connection (autocommit); rows if any."""
        import psycopg

        with psycopg.connect(self.database_url, connect_timeout=5, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def client(self, secret: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        kwargs.setdefault("timeout", 30)
        # Idle connections are dropped before the server's keep-alive (5 s) closes them, so a request
        # never races the server's close (which cuts it off with no answer, like a crash would).
        kwargs.setdefault("limits", httpx.Limits(keepalive_expiry=2))
        return httpx.Client(base_url=self.base_url, headers=headers, **kwargs)


def _is_provider_process(pid: int) -> bool:
    """billiard's forkserver (and its trackers) or a provider it forked: started per job, not per worker."""
    try:
        return b"billiard" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # gone already: it was one of those short-lived children


def _is_server_worker(pid: int) -> bool:
    """Not multiprocessing's resource tracker, which uvicorn's supervisor also starts."""
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# --- one private environment ------------------------------------------------------------------


class Environment:
    """A private PostgreSQL and Redis in ``root``, with a migrated template database.

    ``database()`` clones the template (a fresh, migrated database in about a
    second) so each test gets its own; ``redis_db()`` hands out Redis database
    numbers the same way (the server is started with 4).
    """

    TEMPLATE = "rivya_template"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres = PostgresServer(root / "postgres")
        self.redis = RedisServer(root / "redis")
        self._databases = 0

    def start(self) -> Environment:
        try:
            self.postgres.initdb()
            self.postgres.start()
            self.redis.start()
            self.postgres.create_database(self.TEMPLATE)
            self._migrate(self.TEMPLATE)
        except BaseException:
            self.stop()
            raise
        return self

    def _migrate(self, database: str) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
        env.update(
            DJANGO_SETTINGS_MODULE=STACK_SETTINGS,
            DATABASE_URL=self.postgres.url(database),
            REDIS_URL=self.redis.url(0),
            PYTHONPATH=str(ROOT),
        )
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise HarnessError(f"migrate failed:\n{done.stdout}\n{done.stderr}")

    def database(self, name: str) -> str:
        """A new migrated database (a copy of the template); returns its URL."""
        self._databases += 1
        database = f"{re.sub(r'[^a-z0-9_]', '_', name.lower())[:40]}_{self._databases}"
        self.postgres.create_database(database, template=self.TEMPLATE)
        return self.postgres.url(database)

    def stack(self, *, name: str, database_url: str, redis_db: int, **kwargs: Any) -> Stack:
        folder = self.root / "stacks" / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)[:60]}-{self._databases}"
        self.redis.client(redis_db).flushdb()
        return Stack(root=folder, database_url=database_url, redis_url=self.redis.url(redis_db), **kwargs)

    def stop(self) -> None:
        self.redis.stop(kill=True)
        self.postgres.stop(immediate=True)


@contextlib.contextmanager
def environment(root: Path) -> Iterator[Environment]:
    env = Environment(root)
    env.start()
    try:
        yield env
    finally:
        env.stop()


def quote_command(argv: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in argv)


def report(name: str, figures: Any) -> None:
    """Print a fault test's figures and keep them in ``test-artifacts/faults/<name>.json``.

    pytest shows printed output only with ``-s`` (``make faults``); the file keeps the
    figures of every run, CI's included, for the closing notes and for comparison.
    """
    text = json.dumps(figures, indent=1, default=str)
    print(f"\n{name}: {text}")  # noqa: T201
    folder = ROOT / "test-artifacts" / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.json").write_text(text + "\n")
