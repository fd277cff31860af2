"""A Celery worker process starts its provider forkserver (and an idle provider process) as it
starts (GENERATION_PROVIDER_WARM_START), not in its first job: the first job takes what the
warm-up started, one that comes during the warm-up waits for it, and off keeps the lazy start."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from billiard import forkserver
from celery.signals import worker_process_init

from rivya_api.generations import isolation, live, provider_process, tasks  # noqa: F401  (tasks: the wiring)
from tests.rivya_api.generations.fakes import PidProvider


@pytest.fixture
def spawned(monkeypatch):
    """This process as a worker process just started: no forkserver yet; the forkservers it spawns."""
    server, pids = forkserver._forkserver, []
    real_spawn = forkserver.spawnv_passfds

    def counting_spawn(*args):
        pids.append(real_spawn(*args))
        return pids[-1]

    provider_process.close_all()
    monkeypatch.setattr(forkserver, "spawnv_passfds", counting_spawn)
    monkeypatch.setattr(server, "_forkserver_address", None)
    monkeypatch.setattr(server, "_forkserver_alive_fd", None)
    monkeypatch.setattr(provider_process, "_warming", None)
    monkeypatch.setattr(live, "_worker_loop_pid", live._worker_loop_pid)  # the signal's other receiver
    yield pids
    if provider_process._warming is not None:
        provider_process._warming.join(60)
    provider_process.close_all()
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)  # the test's forkserver exits when its clients are gone
    for pid in pids:
        _reap(pid)


def _reap(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture
def jobs_setting(rivya_settings):
    def use(jobs: int, *, warm: bool = True) -> None:
        rivya_settings("RIVYA_API", GENERATION_PROVIDER_PROCESS_JOBS=jobs, GENERATION_PROVIDER_WARM_START=warm)

    return use


def run() -> int:
    outputs = isolation.provider_run(
        provider=PidProvider({}), input={}, input_files={}, progress=lambda value: None, deadline=time.monotonic() + 30
    )
    return int(outputs[0].data)


def worker_process_starts() -> None:
    worker_process_init.send(sender=None)
    if provider_process._warming is not None:
        provider_process._warming.join(60)


def test_a_worker_process_start_warms_a_forkserver_and_an_idle_process_the_first_job_takes(spawned, jobs_setting):
    jobs_setting(1000)
    worker_process_starts()
    assert len(spawned) == 1  # the forkserver, before any job
    (warm,) = provider_process.idle_pids()
    assert run() == warm  # the first job ran in the warmed process
    assert run() == warm
    assert len(spawned) == 1  # and no second forkserver
    assert provider_process.idle_pids() == [warm]


def test_forking_per_job_the_start_warms_the_forkserver_only(spawned, jobs_setting):
    jobs_setting(1)
    worker_process_starts()
    assert len(spawned) == 1
    assert provider_process.idle_pids() == []
    assert len({run(), run()}) == 2  # a fork per job, from the warmed forkserver
    assert len(spawned) == 1


@pytest.mark.parametrize("jobs", [1000, 1])
def test_off_the_first_job_starts_the_forkserver(spawned, jobs_setting, jobs):
    jobs_setting(jobs, warm=False)
    worker_process_starts()
    assert provider_process._warming is None
    assert spawned == []
    assert provider_process.idle_pids() == []
    first = run()
    assert len(spawned) == 1
    assert provider_process.idle_pids() == ([first] if jobs > 1 else [])


def test_a_job_during_the_warm_up_waits_for_it_and_takes_its_process(spawned, jobs_setting, monkeypatch):
    jobs_setting(1000)
    inside, release = threading.Event(), threading.Event()
    real_forkserver = isolation._forkserver

    def slow_warm_up():  # the warm-up's thread stops before it starts anything
        if threading.current_thread() is provider_process._warming:
            inside.set()
            release.wait(30)
        return real_forkserver()

    monkeypatch.setattr(isolation, "_forkserver", slow_warm_up)
    worker_process_init.send(sender=None)
    assert inside.wait(30)
    answers: list[int] = []
    job = threading.Thread(target=lambda: answers.append(run()))
    job.start()
    job.join(0.5)
    assert job.is_alive()  # waiting for the warm-up,
    assert spawned == []  # starting nothing of its own
    release.set()
    job.join(60)
    assert len(answers) == 1
    assert provider_process.idle_pids() == answers  # the warmed process served it, and only it exists
    assert len(spawned) == 1
