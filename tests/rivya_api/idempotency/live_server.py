"""A real web server process (uvicorn) on this test run's database, that a test may SIGKILL.

The listening socket is bound by the test on 127.0.0.1 port 0 and handed to
uvicorn by file descriptor, so the port is known before the server starts and
no other process can take it in between.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]
SERVER_SETTINGS = "tests.rivya_api.idempotency.server_settings"


def database_url() -> str:
    """A DATABASE_URL naming the database this test run is using."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL: no cleanup, no response, no database rollback by the process itself."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def live_server(**extra_env: str) -> Iterator[LiveServer]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SERVER_SETTINGS,
        # pytest-django exports the run's --ds here (settings.SETTINGS_MODULE is None under overrides).
        "RIVYA_TEST_BASE_SETTINGS": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    if not getattr(settings, "REDIS_URL", ""):
        env.pop("REDIS_URL", None)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.set_inheritable(True)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    log = tempfile.TemporaryFile()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--fd",
        str(listener.fileno()),
        "--lifespan",
        "off",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT, pass_fds=[listener.fileno()], stdout=log, stderr=log)
    listener.close()  # the server holds its own copy
    try:
        _wait_until_up(url, process, log)
        yield LiveServer(url=url, process=process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


def _wait_until_up(url: str, process: subprocess.Popen, log: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"the server exited ({process.returncode}): {log.read().decode()[-3000:]}")  # type: ignore[attr-defined]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not come up within {timeout} s")
