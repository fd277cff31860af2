"""Run ``bin/stack`` (what ``make stack`` runs) as a real process group, for end-to-end and fault tests.

``Stack(env).start()`` launches it against the given ``DATABASE_URL``/``REDIS_URL``
with the web server on an OS-assigned port, waits until ``/readyz`` answers 200
and the Celery worker says it is ready, and ``stop()`` sends SIGTERM to honcho and
waits until no process of the group is left. Everything it printed is kept in
``log_path`` and ``output()`` (honcho prefixes every line with its process name).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Listening at: (http://[0-9.]+:\d+)")


class StackError(RuntimeError):
    pass


class Stack:
    def __init__(self, *, env: dict[str, str], state_dir: Path, web_workers: int = 2, worker_concurrency: int = 2):
        self.state_dir = state_dir
        self.log_path = state_dir / "stack.log"
        self.env = {
            **os.environ,
            "BIND": "127.0.0.1:0",
            "PORT": "0",
            "WEB_CONCURRENCY": str(web_workers),
            "CELERY_WORKER_CONCURRENCY": str(worker_concurrency),
            "PROMETHEUS_MULTIPROC_DIR": str(state_dir / "prometheus"),
            "CELERY_BEAT_SCHEDULE_FILE": str(state_dir / "celerybeat-schedule"),
            "CELERY_WORKER_NAME": f"rivya-stack-test-{os.getpid()}",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 120) -> Stack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bin" / "stack")],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() can prove nothing is left
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        try:
            self.base_url = self.wait_for(LISTENING, deadline=deadline).group(1)
            self.wait_for(re.compile(r"ready\."), deadline=deadline)
            while time.monotonic() < deadline:
                try:
                    if httpx.get(self.base_url + "/readyz", timeout=5).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            raise StackError("the stack did not become ready")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM to honcho (which stops web, worker and beat); kills the group if it lingers."""
        if self.process is None:
            return None
        pgid = self.process.pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.process.returncode

    def leftover_processes(self) -> bool:
        """Whether any process of the stack's group is still alive (a clean stop leaves none)."""
        if self.process is None:
            return False
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- output -------------------------------------------------------------------

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._lines.append(line)
                log.write(line + "\n")
                log.flush()

    def output(self) -> str:
        return "\n".join(self._lines)

    def wait_for(self, pattern: re.Pattern[str], *, deadline: float) -> re.Match[str]:
        seen = 0
        while time.monotonic() < deadline:
            lines = self._lines[seen:]
            for line in lines:
                match = pattern.search(line)
                if match:
                    return match
            seen += len(lines)
            if self.process is not None and self.process.poll() is not None and seen >= len(self._lines):
                raise StackError(f"the stack exited ({self.process.returncode}):\n{self.output()[-4000:]}")
            time.sleep(0.1)
        raise StackError(f"timed out waiting for {pattern.pattern!r}:\n{self.output()[-4000:]}")

    # --- commands against the stack's database ------------------------------------

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``manage.py <args>`` with the stack's environment (its database, Redis and settings)."""
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env={**self.env, "DEBUG": self.env.get("DEBUG", "false")},
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def client(self, secret: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)
