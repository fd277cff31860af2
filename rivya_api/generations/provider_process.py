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
* after ``GENERATION_PROVIDER_PROCESS_JOBS`` jobs the process is retired (memory a provider
  leaks or caches is returned); one found dead between jobs is replaced.

The process comes from the same forkserver, so it never inherits the worker's threads, locks
or connections; it exits by itself when the worker goes (its pipe closes).
"""

from __future__ import annotations

import contextlib
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

_lock = threading.Lock()
_idle: list[ProviderProcess] = []


class ProviderProcess:
    """One child of the forkserver running ``_serve``: jobs in over a duplex pipe, messages out."""

    def __init__(self) -> None:
        context = isolation._forkserver()
        self.connection, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child_end,), name="rivya-provider", daemon=True)
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
            worker.connection.send((provider, dict(input), dict(input_files), deadline))
        except (BrokenPipeError, ConnectionResetError):  # it died between jobs: once more with a new one
            worker.kill()
            worker = ProviderProcess()
            worker.connection.send((provider, dict(input), dict(input_files), deadline))
        worker.jobs += 1
        kind, value = isolation.final_message(worker.process, worker.connection, progress, deadline)
    except BaseException:
        worker.kill()  # past the deadline, a cancel, a lost claim, a death: it may still be running
        raise
    if kind in ("done", "error"):
        _give_back(worker)
    else:  # a crash: the provider's state in that process is not to be trusted
        worker.kill()
    return isolation.answer(kind, value)


def _take() -> ProviderProcess:
    with _lock:
        found = None
        while _idle and found is None:
            candidate = _idle.pop()
            if candidate.owner != os.getpid():
                continue  # inherited through a fork: its parent's, not ours to use or kill
            if candidate.process.is_alive():
                found = candidate
            else:
                candidate.kill()
    return found or ProviderProcess()


def _give_back(worker: ProviderProcess) -> None:
    if worker.jobs < int(api_settings.GENERATION_PROVIDER_PROCESS_JOBS):
        with _lock:
            if len(_idle) < MAX_IDLE:
                _idle.append(worker)
                return
    worker.kill()


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


def _serve(connection: Any) -> None:
    """The provider process: run each job it is sent, until its pipe closes or a provider crashes."""
    try:
        while True:
            try:
                provider, input, input_files, deadline = connection.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            if not isolation.run_and_report(connection, provider, input, input_files, deadline):
                return
    finally:
        connection.close()
