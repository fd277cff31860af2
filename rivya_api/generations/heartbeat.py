"""One heartbeat thread per process for every generation it runs (``GENERATION_HEARTBEAT_SHARED``).

A running job's heartbeat (its task's ``heartbeat_at`` and its hold's lease, renewed every
``GENERATION_HEARTBEAT_INTERVAL``; a lapsed one lets the sweeper take the task over) used to be a
thread started and joined per job: for a quick job, the start and the join were most of what its
heartbeat cost (no beat is due before it ends). Here a process keeps one daemon thread that keeps
each job's schedule: ``track`` when the job starts, ``untrack`` when it ends. Each job keeps its own
schedule (first beat one interval after ``track``, then every interval), as with its own thread.
A quick job costs no thread at all; a due beat runs on a short-lived thread of its own.

What keeps it safe:

* a slow or hung beat (a lock wait, a connection blackholed by a failover) holds up only its own
  job, as with a thread per job: the schedule's thread never runs a beat, and a job whose beat is
  still under way is not given another; the others are beaten on time;
* the schedule's thread never dies of a beat: a beat's own errors are handled by the beat (a failed
  beat is logged and its connection dropped, as before), anything else is logged; a beat that
  raises ``Stop`` (its job's claim is lost) ends that job's beats; should the thread die anyway,
  the next ``track`` starts a new one;
* after a fork (a prefork worker's child) the parent's thread is not there: the child gets a new
  registry (``os.register_at_fork``; its lock too, which the parent's thread may have held), and
  its first ``track`` starts the child's own thread;
* a beat already under way when its job ends may still write once: it is conditional on the task
  still running under that run's attempt (and the lease on that run's token), so it changes
  nothing once the job has ended, been taken over or been re-claimed;
* after each beat ``after_round`` runs on the beat's thread (the services close its database
  connection: a pooled one goes back to the pool, as a job's thread closed it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from rivya_api.conf import api_settings
from rivya_api.generations.models import GenerationTask
from rivya_billing.exceptions import BillingError, HoldNotPendingError
from rivya_billing.services.leases import _hold_renew_joined

logger = logging.getLogger(__name__)

Status = GenerationTask.Status


class Stop(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a beat whose job should be beaten no more (its claim is lost)."""


@dataclass
class _Job:
    beat: Callable[[], None]
    interval: float
    due: float
    beating: bool = False  # a beat of this job is under way


class _Beater:
    """The process's heartbeat thread and the jobs it beats."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.jobs: dict[int, _Job] = {}
        self.keys = itertools.count(1)
        self.thread: threading.Thread | None = None
        self.pid: int | None = None
        self.after_round: Callable[[], None] = lambda: None

    def track(self, beat: Callable[[], None], *, interval: float, after_round: Callable[[], None]) -> int:
        with self.lock:
            if self.pid != os.getpid():  # forked: the parent's thread and jobs are not this process's
                self.jobs, self.thread, self.pid = {}, None, os.getpid()
                self.wake = threading.Event()
            key = next(self.keys)
            self.jobs[key] = _Job(beat=beat, interval=interval, due=time.monotonic() + interval)
            self.after_round = after_round
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="rivya-heartbeat", daemon=True)
                self.thread.start()
        self.wake.set()
        return key

    def untrack(self, key: int) -> None:
        with self.lock:
            self.jobs.pop(key, None)

    def _run(self) -> None:
        while True:
            try:
                self._round()
            except Exception:  # never let one round end the heartbeats of every later job
                logger.exception("The heartbeat thread's round failed; it goes on")
                time.sleep(0.1)

    def _round(self) -> None:
        """Start the due beats, each on a thread of its own, then sleep until the next is due."""
        with self.lock:
            now = time.monotonic()
            due = [(key, job) for key, job in self.jobs.items() if job.due <= now and not job.beating]
            for _key, job in due:
                job.due, job.beating = now + job.interval, True
            later = [job.due for job in self.jobs.values() if not job.beating]
            wake = self.wake
        for key, job in due:
            threading.Thread(target=self._beat, args=(key, job), name="rivya-heartbeat-beat", daemon=True).start()
        if later:
            wake.wait(max(0.0, min(later) - time.monotonic()))
        else:
            wake.wait()  # no job to beat: sleep until one is tracked or a beat ends
        wake.clear()

    def _beat(self, key: int, job: _Job) -> None:
        try:
            job.beat()
        except Stop:
            self.untrack(key)
        except Exception:
            logger.exception("A heartbeat raised; the next one is due as usual")
        finally:
            try:
                self.after_round()
            except Exception:
                logger.exception("Cleaning up after a heartbeat failed")
            with self.lock:
                job.beating = False
                wake = self.wake
            wake.set()  # its next beat is scheduled again


_beater = _Beater()


def _after_fork_in_child() -> None:
    """A forked child's registry: none of the parent's jobs or thread, and a lock no thread holds."""
    global _beater
    _beater = _Beater()


os.register_at_fork(after_in_child=_after_fork_in_child)


def track(beat: Callable[[], None], *, interval: float, after_round: Callable[[], None]) -> int:
    """Beat ``beat()`` every ``interval`` seconds, first one interval from now, until ``untrack(key)``."""
    return _beater.track(beat, interval=interval, after_round=after_round)


def untrack(key: int) -> None:
    """Stop beating the job of ``key`` (a beat under way finishes)."""
    _beater.untrack(key)


def bound_statements(interval: timedelta) -> None:
    """On PostgreSQL, end the current transaction's statements that run longer than a heartbeat
    interval (1 s at least): a beat stuck on a lock is given up and tried again at the next one,
    not left to run past the heartbeat timeout."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {max(1000, int(interval.total_seconds() * 1000))}")


def thread() -> threading.Thread | None:
    """This process's heartbeat thread, if started (for tests and diagnostics)."""
    return _beater.thread if _beater.pid == os.getpid() else None


# --- A running job's progress and heartbeat (moved from services) ---------------


class GenerationCanceled(Exception):
    """Raised inside a running job when its cancel was requested."""


class GenerationSuperseded(Exception):
    """Raised inside a running job that lost its claim: a sweeper failed or re-queued it meanwhile."""


def _renew_hold(task: GenerationTask) -> None:
    if task.price:
        _hold_renew_joined(
            account=task.account,
            reference=task.public_id,
            lease_seconds=_seconds(api_settings.GENERATION_RUN_LEASE),
            lease_token=task.hold_token,
        )


class _Progress:
    """Progress callback handed to the provider: records progress, renews leases, notices cancels.

    Writes at most once per ``min_interval``, counted from the claim (which has just set the
    heartbeat and the lease), so a job shorter than that writes no progress at all: its
    finish checks the claim and the cancel in its own transaction.
    """

    def __init__(self, task: GenerationTask, min_interval: float = 1.0) -> None:
        self.task = task
        self.min_interval = min_interval
        self.last_write = time.monotonic()

    def __call__(self, percent: int) -> None:
        percent = max(0, min(99, int(percent)))
        now = time.monotonic()
        if now - self.last_write < self.min_interval:
            return
        self.last_write = now
        canceled = False
        try:
            with transaction.atomic():
                updated = GenerationTask.objects.filter(
                    pk=self.task.pk,
                    status=Status.RUNNING,
                    hold_token=self.task.hold_token,
                    attempts=self.task.attempts,
                ).update(progress=percent, heartbeat_at=_now())
                if updated:
                    _renew_hold(self.task)
                    canceled = GenerationTask.objects.filter(pk=self.task.pk, cancel_requested=True).exists()
        except HoldNotPendingError:
            updated = 0
        if not updated:
            raise GenerationSuperseded()
        if canceled:
            raise GenerationCanceled()


class _Heartbeat:
    """Renews the task's heartbeat and hold lease while a provider works, whatever it reports.

    Beats on the process's one heartbeat thread (``heartbeat``), or with
    ``GENERATION_HEARTBEAT_SHARED`` False on a thread of its own, started and joined here.
    """

    def __init__(self, task: GenerationTask) -> None:
        self.task = task
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.key: int | None = None

    def beat(self) -> None:
        """One beat; a database error is logged and the connection dropped (a new one at the next beat).
        A hold that refuses the renew (the claim is lost: the lease lapsed, the hold was returned)
        is logged once and ends the beats (``Stop``); nothing of the beat is written."""
        try:
            with transaction.atomic():
                bound_statements(api_settings.GENERATION_HEARTBEAT_INTERVAL)
                if GenerationTask.objects.filter(
                    pk=self.task.pk, status=Status.RUNNING, attempts=self.task.attempts
                ).update(heartbeat_at=_now()):
                    _renew_hold(self.task)
        except DatabaseError:  # e.g. a connection lost in a failover
            logger.warning("Heartbeat of generation %s failed", self.task.public_id, exc_info=True)
            _close_connection()
        except BillingError as exc:
            logger.warning("Heartbeat of generation %s stopped: claim lost (%r)", self.task.public_id, exc)
            raise Stop from exc

    def _beat(self) -> None:
        interval = api_settings.GENERATION_HEARTBEAT_INTERVAL.total_seconds()
        try:
            while not self.stop.wait(interval):
                self.beat()
        except Stop:
            pass
        finally:
            connection.close()

    def __enter__(self) -> _Heartbeat:
        if api_settings.GENERATION_HEARTBEAT_SHARED:
            interval = api_settings.GENERATION_HEARTBEAT_INTERVAL.total_seconds()
            self.key = track(self.beat, interval=interval, after_round=_close_connection)
        else:
            self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.task.public_id}", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.key is not None:
            untrack(self.key)
        if self.thread is not None:
            self.stop.set()
            self.thread.join()


def _close_connection() -> None:
    """The heartbeat thread's connection, closed (a pooled one goes back to the pool)."""
    with contextlib.suppress(DatabaseError):
        connection.close()


def _now() -> datetime:
    return timezone.now()


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())
