"""Background work without a broker: the in-process executor, and how a project picks its mode.

With a broker, Celery sends tasks to it and ``celery -A <project> worker`` runs them.
Without one, ``BackgroundTask.apply_async`` hands each task to a thread pool in the
web process instead: the request returns first and the work happens after, never
eagerly inside the request. ``start_periodic_runner`` does beat's job in the same process.

``RIVYA_API["BACKGROUND"]`` chooses, once, when the app registry is ready
(``configure_background``):

- ``"auto"`` (default): in-process when the project has no Celery app of its own,
  otherwise the project's Celery app (its workers, and its beat with
  ``rivya_api.schedule.BEAT_SCHEDULE``).
- ``"in_process"``: always in-process. With no project Celery app Rivya makes its own
  (``embedded_app``: ``memory://``, this task class, the apps' beat schedule); a project
  app must then have ``task_cls="rivya_api.background:BackgroundTask"`` and is marked
  ``rivya_in_process`` (what the reference project does without ``REDIS_URL``).
- ``"celery"``: never in-process.

In Rivya's own in-process app the web process starts the periodic sweeps at its first
request (``RIVYA_API["IN_PROCESS_BEAT"]``), so management commands start no threads.
Callers need not care which mode is active: they use ``task.delay_on_commit``
(or ``apply_async``) exactly as with a real broker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from celery import Celery, current_app
from celery import _state as celery_state
from celery.contrib.django.task import DjangoTask
from celery.result import AsyncResult
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started
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


MODES = ("auto", "in_process", "celery")


def project_celery_app() -> Celery | None:
    """The project's own Celery app, if it made one (not Celery's fallback default app)."""
    app = celery_state._tls.current_app or celery_state.default_app
    if app is None or (app is celery_state.default_app and app.main == "default" and not app.set_as_current):
        return None
    return app


def embedded_app() -> Celery:
    """Rivya's own Celery app for a project without one: no broker, every task in this process."""
    from rivya_api.schedule import BEAT_SCHEDULE, TASK_MODULES

    app = Celery("rivya_api", task_cls="rivya_api.background:BackgroundTask", set_as_current=True)
    app.conf.update(
        broker_url="memory://",
        task_ignore_result=True,
        rivya_in_process=True,
        beat_schedule=dict(BEAT_SCHEDULE),
        imports=list(TASK_MODULES),
    )
    app.set_default()
    return app


def configure_background(mode: str) -> Celery | None:
    """Apply ``RIVYA_API["BACKGROUND"]`` (see the module docstring); returns Rivya's own app, if it made one."""
    if mode not in MODES:
        raise ImproperlyConfigured(f'RIVYA_API["BACKGROUND"] must be one of {", ".join(MODES)}; got {mode!r}.')
    project_app = project_celery_app()
    if mode == "celery" or (mode == "auto" and project_app is not None):
        return None
    if project_app is not None:
        if not issubclass(project_app.Task, BackgroundTask):
            raise ImproperlyConfigured(
                'RIVYA_API["BACKGROUND"] is "in_process" but the project\'s Celery app does not use '
                'task_cls="rivya_api.background:BackgroundTask".'
            )
        project_app.conf.rivya_in_process = True
        return None
    return embedded_app()


_beat_lock = threading.Lock()
_beat_pid: int | None = None


def start_beat_on_first_request(app: Celery) -> None:
    """Run the periodic sweeps in this web process from its first request on (once per process)."""

    def start(**_: Any) -> None:
        global _beat_pid
        if _beat_pid == os.getpid():
            return
        with _beat_lock:
            if _beat_pid != os.getpid():  # a forked worker process starts its own
                _beat_pid = os.getpid()
                start_periodic_runner(app)

    request_started.connect(start, weak=False, dispatch_uid="rivya_api.background.beat")
