"""One heartbeat thread per process for every generation it runs (``GENERATION_HEARTBEAT_SHARED``).

A running job's heartbeat (its task's ``heartbeat_at`` and its hold's lease, renewed every
``GENERATION_HEARTBEAT_INTERVAL``; a lapsed one lets the sweeper take the task over) used to be a
thread started and joined per job: for a quick job, the start and the join were most of what its
heartbeat cost (no beat is due before it ends). Here a process keeps one daemon thread and hands
it each job's beat: ``track`` when the job starts, ``untrack`` when it ends. Each job keeps its own
schedule (first beat one interval after ``track``, then every interval), as with its own thread.

What keeps it safe:

* the thread never dies of a beat: a beat's own errors are handled by the beat (a failed beat is
  logged and its connection dropped, as before), anything else is logged and the thread goes on;
  should it die anyway, the next ``track`` starts a new one;
* after a fork (a prefork worker's child) the parent's thread is not there: the first ``track`` in
  the child starts the child's own;
* a beat already under way when its job ends may still write once: it is conditional on the task
  still running under that run's attempt (and the lease on that run's token), so it changes
  nothing once the job has ended, been taken over or been re-claimed;
* after each round of beats ``after_round`` runs (the services close the thread's database
  connection: a pooled one goes back to the pool between rounds, as a job's thread closed it).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    beat: Callable[[], None]
    interval: float
    due: float


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
        with self.lock:
            now = time.monotonic()
            due = [(key, job) for key, job in self.jobs.items() if job.due <= now]
            later = [job.due for job in self.jobs.values() if job.due > now]
            wake = self.wake
        for key, job in due:
            with self.lock:
                if key not in self.jobs:
                    continue  # ended meanwhile
                job.due = time.monotonic() + job.interval
            try:
                job.beat()
            except Exception:
                logger.exception("A heartbeat raised; the next one is due as usual")
        if due:
            self.after_round()
        if not later and not due:
            wake.wait()  # no job: sleep until one is tracked
        elif not due:
            wake.wait(max(0.0, min(later) - time.monotonic()))
        wake.clear()


_beater = _Beater()


def track(beat: Callable[[], None], *, interval: float, after_round: Callable[[], None]) -> int:
    """Beat ``beat()`` every ``interval`` seconds, first one interval from now, until ``untrack(key)``."""
    return _beater.track(beat, interval=interval, after_round=after_round)


def untrack(key: int) -> None:
    """Stop beating the job of ``key`` (a beat under way finishes)."""
    _beater.untrack(key)


def thread() -> threading.Thread | None:
    """This process's heartbeat thread, if started (for tests and diagnostics)."""
    return _beater.thread if _beater.pid == os.getpid() else None
