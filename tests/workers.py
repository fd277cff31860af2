"""A real Celery worker for tests of background work: ``celery -A config worker`` as a subprocess
on this run's Redis and test database (never ``task_always_eager``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def _database_url() -> str:
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


class CeleryWorker:
    """``celery -A config worker`` as a subprocess on this run's Redis and test database."""

    def __init__(self, *, concurrency: int = 2, extra_env: dict[str, str] | None = None) -> None:
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "var" / f"test-celery-worker-{os.getpid()}.log"

    def start(self) -> CeleryWorker:
        from config.celery import app

        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": os.environ["REDIS_URL"],
            "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
            "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            # The same file storage as this test (tests get a private MEDIA_ROOT).
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            **self.extra_env,
        }
        if getattr(settings, "RIVYA_ACCOUNT_MODEL", "") == "orghost.Organization":
            # The worker must use the host's account model, or task.account reads another table.
            env["DJANGO_SETTINGS_MODULE"] = "tests.orghost.worker_settings"
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--loglevel=INFO", f"--concurrency={self.concurrency}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            f"--hostname=rivya-test-{os.getpid()}@%h",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-3000:]}")
            if app.control.ping(timeout=0.5, destination=[f"rivya-test-{os.getpid()}@{os.uname().nodename}"]):
                return self
        self.stop()
        raise RuntimeError(f"celery worker did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crashed machine would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> CeleryWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
