"""A provider process that serves one job after another (``GENERATION_PROVIDER_PROCESS_JOBS`` > 1).

Forking a child per job (``isolation``'s plain path) costs the worker a fork from the
forkserver, the child's start, and a join per job: most of a quick job's CPU. Here each
worker process keeps its provider process (one per thread running jobs at once, in the
embedded executor) and sends it the next job over a pipe. What keeps a job isolated:

* a job the worker gives up on — past its deadline, its progress callback raised (a cancel,
  a lost claim), the process died or a provider crashed (anything but a ``ProviderError``) —
  kills the process (SIGKILL, then joined); the next job gets a new one;
* a job that ended with its outputs or a ``ProviderError`` hands the process back, so one
  process never holds more than one job, and never one that was abandoned;
* a process is taken again only after it said ``("ready", <job>)``, which it says only when the
  job left no thread running (else it exits): nothing a job started can write during the next
  one, whose messages carry its number so that a stray frame is never taken as its own;
* after ``GENERATION_PROVIDER_PROCESS_JOBS`` jobs the process is retired (memory a provider
  leaks or caches is returned); one found dead between jobs is replaced.

The process comes from the same forkserver, so it never inherits the worker's threads, locks
or connections; it exits by itself when the worker goes (its pipe closes).

A Celery worker process warms up as it starts (``warm_start``, on ``worker_process_init``;
``RIVYA_API["GENERATION_PROVIDER_WARM_START"]``): a thread starts the forkserver and, here, one
provider process, which says ``("ready", 0)`` once it is up and waits idle. The worker takes
its first task meanwhile; a job that comes before the warm-up ended waits for it and takes
that process (starting its own would only queue behind the same forkserver).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from rivya_api.conf import api_settings
from rivya_api.generations import isolation
from rivya_api.generations.providers import InputFile, OutputFile

# Idle processes a worker process keeps at most (more only while that many jobs run at once).
MAX_IDLE = 8
# How long taking an idle process waits for its "ready" (sent right after its last job's answer).
_READY_SECONDS = 2.0
# How long the warm-up waits for its new process to say it is up (imports on a busy machine).
_WARM_SECONDS = 60.0

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_idle: list[ProviderProcess] = []
_warming: threading.Thread | None = None


class ProviderProcess:
    """One child of the forkserver running ``_serve``: jobs in over a duplex pipe, messages out."""

    def __init__(self, *, announce: bool = False) -> None:
        context = isolation._forkserver()
        self.connection, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child_end, announce), name="rivya-provider", daemon=True)
        self.process.start()
        child_end.close()
        self.owner = os.getpid()
        self.jobs = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(isolation._JOIN_SECONDS)
        self.connection.close()


def run(
    *,
    provider: Any,
    input: Mapping[str, Any],
    input_files: Mapping[str, InputFile],
    progress: Callable[[int], None],
    deadline: float,
) -> list[OutputFile]:
    """``isolation.provider_run`` in a reused process: the same results, errors and deadline."""
    worker = _take()
    try:
        try:
            worker.connection.send((worker.jobs + 1, provider, dict(input), dict(input_files), deadline))
        except (BrokenPipeError, ConnectionResetError):  # it died between jobs: once more with a new one
            worker.kill()
            worker = ProviderProcess()
            worker.connection.send((1, provider, dict(input), dict(input_files), deadline))
        worker.jobs += 1
        kind, value = isolation.final_message(worker.process, worker.connection, progress, deadline, worker.jobs)
    except BaseException:
        worker.kill()  # past the deadline, a cancel, a lost claim, a death: it may still be running
        raise
    if kind in ("done", "error"):
        _give_back(worker)
    else:  # a crash: the provider's state in that process is not to be trusted
        worker.kill()
    return isolation.answer(kind, value)


def _take() -> ProviderProcess:
    """An idle process that said it is ready for its next job, or a new one."""
    warming = _warming
    if warming is not None:
        warming.join()  # then take its process (one inherited through a fork is not running: no wait)
    while True:
        with _lock:
            candidate = None
            while _idle and candidate is None:
                candidate = _idle.pop()
                if candidate.owner != os.getpid():
                    candidate = None  # inherited through a fork: its parent's, not ours to use or kill
        if candidate is None:
            return ProviderProcess()
        if _ready(candidate) and candidate.process.is_alive():
            return candidate
        candidate.kill()


def _ready(worker: ProviderProcess) -> bool:
    """Its next message is ``("ready", <its last job>)``: nothing that job left can still write to it."""
    try:
        if worker.connection.poll(_READY_SECONDS):
            return worker.connection.recv() == ("ready", worker.jobs)
    except Exception:  # gone, reset, or a stray frame that does not unpickle
        pass
    return False


def _give_back(worker: ProviderProcess) -> None:
    if worker.jobs < int(api_settings.GENERATION_PROVIDER_PROCESS_JOBS):
        with _lock:
            if len(_idle) < MAX_IDLE:
                _idle.append(worker)
                return
    worker.kill()


def warm_start(**_: Any) -> None:
    """Start this process's forkserver and, with reused processes, an idle provider process.

    In a thread, so that a Celery worker process takes its first task at once; connected to
    ``worker_process_init`` (``tasks``). Nothing without ``GENERATION_PROVIDER_PROCESS`` or with
    ``GENERATION_PROVIDER_WARM_START`` off: the first job then starts them.
    """
    global _warming
    if not (api_settings.GENERATION_PROVIDER_PROCESS and api_settings.GENERATION_PROVIDER_WARM_START):
        return
    thread = threading.Thread(target=_warm, name="rivya-provider-warm", daemon=True)
    _warming = thread
    thread.start()


def _warm() -> None:
    try:
        if int(api_settings.GENERATION_PROVIDER_PROCESS_JOBS) <= 1:
            isolation.forkserver_start()  # per-job forks: the forkserver is all there is to start
            return
        worker = ProviderProcess(announce=True)
        if worker.connection.poll(_WARM_SECONDS):  # its ("ready", 0): read by the job that takes it
            _give_back(worker)
        else:
            worker.kill()
    except Exception:  # the first job starts them instead
        logger.warning("The provider process warm-up failed.", exc_info=True)


def idle_pids() -> list[int]:
    """The idle provider processes of this process (for tests and diagnostics)."""
    with _lock:
        return [worker.pid for worker in _idle if worker.owner == os.getpid()]


def close_all() -> None:
    """Stop this process's idle provider processes."""
    with _lock:
        workers = [worker for worker in _idle if worker.owner == os.getpid()]
        _idle[:] = [worker for worker in _idle if worker.owner != os.getpid()]
    for worker in workers:
        worker.kill()


def _serve(connection: Any, announce: bool = False) -> None:
    """The provider process: run each job it is sent, until its pipe closes or a provider crashes.

    After each job it says ``("ready", job)``, or exits at once if the job left a thread running
    (it could still report progress or write to the pipe during another account's job). With
    ``announce`` (a warm-up's idle process) it says ``("ready", 0)`` first.
    """
    try:
        if announce:
            connection.send(("ready", 0))
        while True:
            try:
                job, provider, input, input_files, deadline = connection.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            if not isolation.run_and_report(connection, provider, input, input_files, deadline, job):
                return
            del provider, input, input_files  # another account's media is not kept while idle
            if threading.active_count() > 1:
                os._exit(0)
            connection.send(("ready", job))
    finally:
        connection.close()
