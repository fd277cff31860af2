"""The provider process, reused across jobs (GENERATION_PROVIDER_PROCESS_JOBS > 1) and forked per
job (1, the plain path): the same answers, errors and deadline either way; a reused process
serves job after job, and one a job gave up on is killed and replaced."""

from __future__ import annotations

import os
import time

import pytest

from rivya_api.generations import isolation, provider_process
from rivya_api.generations.providers import ProviderTimeoutError, ProviderUnavailableError
from tests.rivya_api.generations.fakes import PidProvider

BOTH_WAYS = pytest.mark.parametrize("jobs", [1000, 1], ids=["reused", "per-job"])


class Canceled(Exception):
    pass


@pytest.fixture(autouse=True)
def fresh_processes():
    provider_process.close_all()
    yield
    provider_process.close_all()


def run(mode: str = "ok", *, seconds: float = 20, progress=lambda value: None, pid_file=None) -> int:
    provider = PidProvider({"pid_file": str(pid_file)} if pid_file else {})
    outputs = isolation.provider_run(
        provider=provider, input={"mode": mode}, input_files={}, progress=progress, deadline=time.monotonic() + seconds
    )
    return int(outputs[0].data)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def jobs_setting(rivya_settings):
    def use(jobs: int) -> None:
        rivya_settings("RIVYA_API", GENERATION_PROVIDER_PROCESS_JOBS=jobs)

    return use


@BOTH_WAYS
def test_jobs_in_a_row_run_outside_the_worker(jobs_setting, jobs):
    jobs_setting(jobs)
    pids = [run() for _ in range(5)]
    assert os.getpid() not in pids
    if jobs == 1:
        assert len(set(pids)) == 5
        assert provider_process.idle_pids() == []
    else:
        assert len(set(pids)) == 1  # one process served them all
        assert provider_process.idle_pids() == pids[:1]


@BOTH_WAYS
def test_a_provider_error_is_raised_and_a_reused_process_stays(jobs_setting, jobs):
    jobs_setting(jobs)
    first = run()
    with pytest.raises(ProviderUnavailableError):
        run("fail")
    assert (run() == first) is (jobs > 1)


@BOTH_WAYS
def test_an_overrun_is_killed_at_the_deadline_and_the_next_job_runs(jobs_setting, jobs, tmp_path):
    jobs_setting(jobs)
    first = run()
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        run("overrun", seconds=0.5, pid_file=tmp_path / "pid")
    assert time.monotonic() - started < 3
    overran = int((tmp_path / "pid").read_text())
    assert overran == first or jobs == 1  # reused: the process that served the first job ran it
    assert gone(overran)
    assert run() not in (first, overran)


@BOTH_WAYS
def test_a_crash_is_a_process_error_and_the_process_is_replaced(jobs_setting, jobs):
    jobs_setting(jobs)
    first = run()
    with pytest.raises(isolation.ProviderProcessError, match="ZeroDivisionError"):
        run("crash")
    with pytest.raises(isolation.ProviderProcessError):
        run("exit")
    assert run() != first
    assert gone(first)


@BOTH_WAYS
def test_a_cancel_from_progress_stops_the_process_and_propagates(jobs_setting, jobs, tmp_path):
    jobs_setting(jobs)

    def cancel(value: int) -> None:
        if value >= 10:  # the provider's own report, after it wrote its pid
            raise Canceled()

    first = run()
    with pytest.raises(Canceled):
        run("overrun", progress=cancel, pid_file=tmp_path / "pid")
    overran = int((tmp_path / "pid").read_text())
    assert overran == first or jobs == 1
    assert gone(overran)
    assert run() not in (first, overran)


def test_a_process_that_died_between_jobs_is_replaced(jobs_setting):
    jobs_setting(1000)
    first = run()
    os.kill(first, 9)
    assert gone(first)
    assert run() != first


def test_a_process_is_retired_after_its_number_of_jobs(jobs_setting):
    jobs_setting(3)
    pids = [run() for _ in range(6)]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5]
    assert gone(pids[0])


def test_one_process_per_job_running_at_once(jobs_setting):
    from concurrent.futures import ThreadPoolExecutor

    jobs_setting(1000)
    with ThreadPoolExecutor(3) as pool:
        pids = list(pool.map(lambda _: run(), range(9)))
    assert 1 <= len(set(pids)) <= 3
    assert set(provider_process.idle_pids()) == set(pids)


@BOTH_WAYS
@pytest.mark.parametrize("ending", ["leave-fail", "leave-ok"])
def test_a_thread_a_job_left_running_never_reaches_the_next_job(jobs_setting, jobs, ending):
    jobs_setting(jobs)
    seen_a: list[int] = []
    seen_b: list[int] = []
    if ending == "leave-fail":
        with pytest.raises(ProviderUnavailableError):
            run(ending, progress=seen_a.append)
        first = None
    else:
        first = run(ending, progress=seen_a.append)
    second = run("slow", progress=seen_b.append)  # long enough for the leftover thread to report
    assert 77 not in seen_a + seen_b
    assert seen_b == [0, 10, 100]
    assert second != first  # the process the thread was left in was not reused
    assert provider_process.idle_pids() == ([second] if jobs > 1 else [])


def test_a_process_whose_job_left_no_thread_says_ready_and_is_reused(jobs_setting):
    jobs_setting(1000)
    first = run()
    assert run() == first


class _Receiver:
    def __init__(self, messages):
        self.messages = list(messages)

    def poll(self, timeout=0):
        return True

    def recv(self):
        message = self.messages.pop(0)
        if isinstance(message, BaseException):
            raise message
        return message


class _Alive:
    exitcode = None

    def is_alive(self):
        return True


def test_messages_of_another_job_are_dropped():
    seen: list[int] = []
    receiver = _Receiver([(1, "progress", 77), (2, "progress", 5), (1, "done", ["old"]), (2, "done", ["new"])])
    kind, value = isolation.final_message(_Alive(), receiver, seen.append, time.monotonic() + 5, 2)
    assert (kind, value, seen) == ("done", ["new"], [5])


@pytest.mark.parametrize("error", [EOFError(), ConnectionResetError(104, "reset")])
def test_a_reset_or_closed_pipe_is_a_process_error(error):
    with pytest.raises(isolation.ProviderProcessError):
        isolation.final_message(_Alive(), _Receiver([error]), lambda value: None, time.monotonic() + 5)
