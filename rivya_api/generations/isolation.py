"""A provider runs in a child process, and is stopped when it overruns its model's time limit.

A provider's deadline is cooperative (``ProgressReporter`` checks it when the
provider reports progress), so a provider stuck in a long computation, a C call
or a socket would keep its task running and its worker busy for as long as it
liked. ``provider_run`` gives the limit teeth: the provider runs in a child
process, the worker waits for its messages (progress, outputs, or a
``ProviderError``) until the deadline, and kills the child when it passes, or
when the runner's progress callback raises (a cancel, a lost claim). The same
happens in the embedded executor's threads and in a Celery prefork worker.

Children are forked from a forkserver (billiard's, since a Celery prefork child
is a daemon process that the standard library refuses to give children) that
imported the local providers once, so a job starts in tens of milliseconds and
never inherits the worker's threads, locks or connections. Providers need no
Django inside the child: they take their options and bytes and return bytes.

A provider process is reused: it serves one job after another (``provider_process``), up to
``RIVYA_API["GENERATION_PROVIDER_PROCESS_JOBS"]`` of them, so a job costs a pickle round trip,
not a fork and a join. A process that a job gave up on (past the deadline, a cancel, a lost
claim, a crash, or a death) is killed and the next job gets a new one, so the deadline keeps its
teeth and no job ever sees what an abandoned one left behind. ``1`` forks per job (the plain path).

A Celery worker process starts its forkserver, and with reused processes an idle provider
process, as it starts (``provider_process.warm_start``, ``RIVYA_API["GENERATION_PROVIDER_WARM_START"]``),
so its first job does not pay for them.

``RIVYA_API["GENERATION_PROVIDER_PROCESS"] = False`` runs providers in the
worker itself (for a provider that cannot be pickled); the deadline is then
only cooperative, and the generations sweeper fails what overruns afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import billiard

from rivya_api.generations.providers import InputFile, OutputFile, ProviderError, ProviderTimeoutError

# Imported once by the forkserver, so children start with them loaded.
PRELOAD = ["rivya_api.generations.providers.local"]
# How often the worker looks at a silent child (to notice it died).
_POLL_SECONDS = 1.0
# How long a killed child may take to be reaped.
_JOIN_SECONDS = 5.0

_context_lock = threading.Lock()
_context: Any = None


class ProviderProcessError(Exception):
    """The provider's process died or raised something that is not a ``ProviderError`` (a bug)."""


def _forkserver() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = billiard.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _context = context
        return _context


def forkserver_start() -> None:
    """Start this process's forkserver now rather than at its first job's fork.

    It returns once the forkserver's process is spawned (fork and exec, safe from any thread); the
    forkserver imports ``PRELOAD`` on its own meanwhile. billiard's lock makes a job that forks at
    the same time wait for this one: there is never a second forkserver.
    """
    from billiard import forkserver

    _forkserver()
    forkserver.ensure_running()


def provider_run(
    *,
    provider: Any,
    input: Mapping[str, Any],
    input_files: Mapping[str, InputFile],
    progress: Callable[[int], None],
    deadline: float,
) -> list[OutputFile]:
    """``provider.run(...)`` in a child process, killed at ``deadline`` (``time.monotonic()``).

    Raises what the provider raised (a ``ProviderError``), ``ProviderTimeoutError``
    past the deadline, ``ProviderProcessError`` if the child died or hit a bug,
    and whatever ``progress`` raises (after stopping the child).
    """
    from rivya_api.conf import api_settings  # here: the provider's process needs no Django settings

    if int(api_settings.GENERATION_PROVIDER_PROCESS_JOBS) > 1:
        from rivya_api.generations import provider_process

        return provider_process.run(
            provider=provider, input=input, input_files=input_files, progress=progress, deadline=deadline
        )
    context = _forkserver()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main,
        args=(sender, provider, dict(input), dict(input_files), deadline),
        name="rivya-provider",
        daemon=True,
    )
    process.start()
    sender.close()
    try:
        return _follow(process, receiver, progress, deadline)
    finally:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        process.join(_JOIN_SECONDS)
        receiver.close()


def _follow(process: Any, receiver: Any, progress: Callable[[int], None], deadline: float) -> list[OutputFile]:
    return answer(*final_message(process, receiver, progress, deadline))


def final_message(
    process: Any, receiver: Any, progress: Callable[[int], None], deadline: float, job: int | None = None
) -> tuple[str, Any]:
    """Pass the child's progress to ``progress`` until its last message: ``(kind, value)``.

    With ``job``, messages come as ``(job, kind, value)`` and one of another job is dropped.
    Raises ``ProviderTimeoutError`` at the deadline, ``ProviderProcessError`` when the child
    dies first, and whatever ``progress`` raises (the child is then still running).
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeoutError()
        if not receiver.poll(min(remaining, _POLL_SECONDS)):
            if not process.is_alive() and not receiver.poll(0):
                raise ProviderProcessError(f"The provider's process exited with code {process.exitcode}.")
            continue
        try:
            message = receiver.recv()
        except (EOFError, OSError):  # a child that exits with bytes unread resets the socket
            raise ProviderProcessError("The provider's process died without an answer.") from None
        if job is not None:
            number, *message = message
            if number != job:
                continue  # another job's: never this one's progress or outputs
        kind, value = message
        if kind == "progress":
            progress(value)
        else:
            return kind, value


def answer(kind: str, value: Any) -> list[OutputFile]:
    """The outputs of a ``"done"``; raises the provider's error, or ``ProviderProcessError`` for a crash."""
    if kind == "done":
        return value
    if kind == "error":
        raise value
    raise ProviderProcessError(f"The provider failed in its process:\n{value}")


def _child_main(sender: Any, provider: Any, input: dict, input_files: dict, deadline: float) -> None:
    """The child: run the provider, report progress, send the outputs or the error, exit."""
    try:
        run_and_report(sender, provider, input, input_files, deadline)
    finally:
        sender.close()


def run_and_report(
    sender: Any, provider: Any, input: dict, input_files: dict, deadline: float, job: int | None = None
) -> bool:
    """Run the provider, sending its progress and then its outputs or error; False after a crash.

    With ``job``, each message is sent as ``(job, kind, value)``.
    """

    def send(message: tuple[str, Any]) -> None:
        try:
            sender.send(message if job is None else (job, *message))
        except OSError:  # the worker stopped listening (it gave up on this job): stop too
            raise SystemExit(0) from None

    try:
        outputs = provider.run(
            input=input, input_files=input_files, progress=lambda value: send(("progress", value)), deadline=deadline
        )
        send(("done", outputs))
    except ProviderError as exc:
        send(("error", exc))
    except SystemExit:
        raise
    except BaseException:
        send(("crash", traceback.format_exc()[-4000:]))
        return False
    return True
