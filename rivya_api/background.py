"""Background work without a broker: the in-process executor.

With ``REDIS_URL`` set, Celery sends tasks to Redis and ``celery -A config
worker`` runs them. Without it (the embedded default) the reference project
sets ``rivya_in_process`` on the Celery app, and ``BackgroundTask.apply_async``
hands the task to a thread pool in the web process instead: the request
returns first and the work happens after, never eagerly inside the request.
``start_periodic_runner`` does beat's job in the same process.

Callers need not care which mode is active: they use ``task.delay_on_commit``
(or ``apply_async``) exactly as with a real broker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from celery import Celery, current_app
from celery.contrib.django.task import DjangoTask
from celery.result import AsyncResult
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor(app: Celery | None = None) -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            workers = (app or current_app).conf.get("rivya_in_process_workers") or 4
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rivya-bg")
        return _executor


def _run(task: Any, args: tuple, kwargs: dict, task_id: str, delay: float) -> Any:
    if delay > 0:
        time.sleep(delay)
    close_old_connections()
    try:
        return task.apply(args=args, kwargs=kwargs, task_id=task_id, throw=False).result
    except Exception:
        logger.exception("In-process task %s failed", task.name)
        raise
    finally:
        close_old_connections()


def submit(task: Any, args: tuple = (), kwargs: dict | None = None, **options: Any) -> Future:
    """Run ``task`` in the executor's threads; ``countdown`` is honoured by a sleep there."""
    task_id = options.get("task_id") or str(uuid.uuid4())
    delay = float(options.get("countdown") or 0)
    return executor(task.app).submit(_run, task, tuple(args or ()), dict(kwargs or {}), task_id, delay)


class BackgroundTask(DjangoTask):
    """Celery's Django task, routed to the in-process executor when the app has no broker."""

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: Any = None, **options: Any) -> Any:
        if self.app.conf.get("rivya_in_process") and not self.app.conf.task_always_eager:
            task_id = task_id or str(uuid.uuid4())
            submit(self, args or (), kwargs or {}, task_id=task_id, **options)
            return AsyncResult(task_id, app=self.app)
        return super().apply_async(args=args, kwargs=kwargs, task_id=task_id, **options)


def _interval_seconds(schedule: Any) -> float:
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, (int, float)):
        return float(schedule)
    return float(schedule.run_every.total_seconds())


def start_periodic_runner(app: Celery, stop: threading.Event | None = None) -> threading.Thread:
    """Queue every ``beat_schedule`` entry at its interval, in a daemon thread of this process."""
    stop = stop or threading.Event()
    # Import every app's tasks module (Celery's autodiscovery), as beat does: a task that
    # is only ever queued by the schedule is otherwise never imported in the web process.
    app.loader.import_default_modules()
    entries = [
        (name, entry["task"], _interval_seconds(entry["schedule"]))
        for name, entry in (app.conf.beat_schedule or {}).items()
    ]
    due = {name: time.monotonic() + interval for name, _, interval in entries}

    def loop() -> None:
        while not stop.wait(1.0):
            now = time.monotonic()
            for name, task_name, interval in entries:
                if now >= due[name]:
                    due[name] = now + interval
                    app.tasks[task_name].apply_async()

    thread = threading.Thread(target=loop, name="rivya-beat", daemon=True)
    thread.start()
    return thread
