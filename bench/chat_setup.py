"""CPU a streamed chat turn costs the gateway, measured in-process (issue 25, targets 4 and 5).

    .venv/bin/python bench/chat_setup.py [--config embedded|production] [--turns 300] [--json]

Runs the project's ASGI application in this process (the settings of ``bench/chat_harness.py``'s
gateway) against the stand-in upstream (a separate process, 2 chunks), and sends ``--turns``
streamed turns one after the other through it, as uvicorn would. For each turn it takes this
process's CPU time (every thread) at arrival, when the response starts (the turn is accepted:
authenticated, validated, priced, its rows written and its credits held, the model's request
sent) and when the response ends (the reply settled). Waiting is not CPU, so the figures are the
turn's own work and hold on a busy machine. Also counted: worker-thread calls ("hops") and
threads started per turn. ``--profile`` samples the process with py-spy (``--nonblocking``,
idle threads left out) and prints where the time went, by function.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_client import BODY  # noqa: E402
from bench.chat_harness import CHAT_STREAM, PYTHON, free_port, gateway_env, setup_database, wait_listening  # noqa: E402

COUNTS = {"hops": 0, "threads": 0}
WAITS: dict[str, list[float]] = {"queued": [], "running": [], "connection": []}  # seconds, per worker call


def count_hops_and_threads() -> None:
    submit, start = concurrent.futures.ThreadPoolExecutor.submit, threading.Thread.start

    def counted_submit(self, fn, /, *args, **kwargs):
        COUNTS["hops"] += 1
        submitted = time.perf_counter()

        def timed(*args, **kwargs):
            began = time.perf_counter()
            WAITS["queued"].append(began - submitted)
            try:
                return fn(*args, **kwargs)
            finally:
                WAITS["running"].append(time.perf_counter() - began)

        return submit(self, timed, *args, **kwargs)

    def counted_start(self, *args, **kwargs):
        COUNTS["threads"] += 1
        return start(self, *args, **kwargs)

    concurrent.futures.ThreadPoolExecutor.submit = counted_submit
    threading.Thread.start = counted_start
    try:
        from psycopg_pool import ConnectionPool
    except ImportError:
        return
    getconn = ConnectionPool.getconn

    def timed_getconn(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return getconn(self, *args, **kwargs)
        finally:
            WAITS["connection"].append(time.perf_counter() - began)

    ConnectionPool.getconn = timed_getconn


def burst(app, key: str, turns: int, ramp: float) -> dict:
    """``turns`` turns arriving evenly over ``ramp`` seconds, all at once in this process: where they wait."""

    async def run() -> dict:
        for values in WAITS.values():
            values.clear()
        cpu0, t0 = time.process_time(), time.perf_counter()
        ready: list[float] = []
        opened: list[float] = []

        async def staggered(index: int) -> None:
            await asyncio.sleep(ramp * index / turns)
            began = time.perf_counter()
            await one_turn(app, key, opened)
            ready.append(time.perf_counter() - began)

        await asyncio.gather(*(staggered(i) for i in range(turns)))
        cpu = time.process_time() - cpu0
        return {
            "burst_turns": turns,
            "burst_wall_s": round(time.perf_counter() - t0, 2),
            "burst_cpu_ms_per_turn": round(1000 * cpu / turns, 2),
            "response_start_wall_ms_p50_p99": [round(1000 * percentile(opened, q), 1) for q in (50, 99)],
            "turn_wall_ms_p50_p99": [round(1000 * percentile(ready, q), 1) for q in (50, 99)],
            **{
                f"{name}_ms_p50_p99_max": [round(1000 * percentile(v, q), 2) for q in (50, 99, 100)]
                for name, v in WAITS.items()
            },
        }

    return asyncio.get_event_loop().run_until_complete(run())


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def scope(key: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/chat/completions",
        "raw_path": b"/api/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def one_turn(app, key: str, started: list | None = None) -> tuple[float, float, int]:
    """(CPU-s to the response's start, CPU-s to its end, status); appends the wall time to the start to ``started``."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    marks: dict[str, float] = {}
    sent = False
    done = asyncio.Event()

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            marks["start"] = time.process_time()
            if started is not None:
                started.append(time.perf_counter() - wall0)
            marks["status"] = message["status"]
        elif not message.get("more_body"):
            marks["end"] = time.process_time()
            done.set()

    await app(scope(key), receive, send)
    return marks["start"] - cpu0, marks["end"] - cpu0, int(marks["status"])


async def drive(app, key: str, turns: int, warm_up: int = 20) -> dict:
    for _ in range(warm_up):
        await one_turn(app, key)
    await asyncio.sleep(0.5)  # the warm-up turns' last writes
    hops0, threads0 = COUNTS["hops"], COUNTS["threads"]
    cpu0 = time.process_time()
    starts, ends, statuses = [], [], set()
    for _ in range(turns):
        start, end, status = await one_turn(app, key)
        starts.append(start)
        ends.append(end)
        statuses.add(status)
    total = time.process_time() - cpu0
    starts.sort()
    ends.sort()
    return {
        "turns": turns,
        "statuses": sorted(statuses),
        "cpu_ms_to_response_start_p50": 1000 * starts[len(starts) // 2],
        "cpu_ms_to_response_end_p50": 1000 * ends[len(ends) // 2],
        "cpu_ms_per_turn": 1000 * total / turns,
        "hops_per_turn": (COUNTS["hops"] - hops0) / turns,
        "threads_per_turn": (COUNTS["threads"] - threads0) / turns,
    }


PROFILERS: list = []


def profile_every_thread() -> None:
    """cProfile on CPU time (``time.thread_time``) in the loop's thread and in every worker-thread call."""
    import cProfile

    local = threading.local()
    run = concurrent.futures.thread._WorkItem.run

    def profiled_run(self):
        profiler = getattr(local, "profiler", None)
        if profiler is None:
            profiler = local.profiler = cProfile.Profile(time.thread_time)
            PROFILERS.append(profiler)
        profiler.enable()
        try:
            return run(self)
        finally:
            profiler.disable()

    concurrent.futures.thread._WorkItem.run = profiled_run


def print_profile(main_profiler, limit: int = 70) -> None:
    import pstats

    stats = pstats.Stats(main_profiler)
    for profiler in PROFILERS:
        stats.add(profiler)
    stats.dump_stats("/tmp/chat_setup.pstats")
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(40)


def switch_overrides(settings, switch: str, value: bool) -> dict:
    """``override_settings`` arguments turning every one of ``switch``'s comma-separated
    ``[NAMESPACE.]NAME`` boolean settings to ``value``."""
    override: dict = {}
    for one in switch.split(","):
        namespace, _, name = one.strip().rpartition(".")
        if namespace:
            override[namespace] = {**override.get(namespace, getattr(settings, namespace)), name: value}
        else:
            override[name] = value
    return override


def switch_rounds(app, key: str, switch: str, turns: int, rounds: int = 6) -> dict:
    """CPU per turn, and to the response's start, with ``switch`` (``[NAMESPACE.]NAME``, a boolean
    setting, or several comma-separated) on and off, in interleaved rounds; also the median of
    each pair of rounds' difference (off minus on), which a slower spell of the machine moves less."""
    from django.conf import settings
    from django.test import override_settings

    names = ("cpu_ms_per_turn", "cpu_ms_to_response_start_p50")
    per_round: dict[tuple[str, bool], list[float]] = {(name, v): [] for name in names for v in (True, False)}
    loop = asyncio.get_event_loop()
    for index in range(2 * rounds):
        value = (index % 2 == 0) != (index % 4 >= 2)  # on, off, off, on, …: neither always goes first
        with override_settings(**switch_overrides(settings, switch, value)):
            figures = loop.run_until_complete(drive(app, key, turns, warm_up=2))
        for name in names:
            per_round[name, value].append(figures[name])
    return paired_summary(switch, names, per_round)


def paired_summary(switch: str, names: tuple[str, ...], per_round: dict[tuple[str, bool], list[float]]) -> dict:
    """Each figure's median with the switch on and off, the median of each pair of rounds'
    difference (off minus on: what the switch saves), and every round."""
    import statistics

    result: dict = {"switch": switch}
    for name in names:
        on, off = per_round[name, True], per_round[name, False]
        result[f"{name}_on"] = round(statistics.median(on), 3)
        result[f"{name}_off"] = round(statistics.median(off), 3)
        saved = [b - a for a, b in zip(on, off, strict=True)]
        result[f"{name}_saved_median_of_pairs"] = round(statistics.median(saved), 3)
        result[f"{name}_rounds_on_off"] = [[round(v, 2) for v in on], [round(v, 2) for v in off]]
    return result


def profile_self(seconds: float, out: Path) -> subprocess.Popen:
    command = [str(ROOT / ".venv/bin/py-spy"), "record", "--nonblocking", "-r", "500", "-d", str(seconds)]
    command += ["-f", "raw", "-o", str(out), "-p", str(os.getpid())]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--profile", type=Path, help="write py-spy's raw samples here")
    parser.add_argument("--cprofile", action="store_true", help="print a CPU-time profile of every thread")
    parser.add_argument("--burst", type=int, default=0, help="then this many turns over --ramp seconds at once")
    parser.add_argument("--ramp", type=float, default=1.0)
    parser.add_argument(
        "--switch", help="[NAMESPACE.]NAME of a boolean setting (or several, comma-separated): CPU per turn on vs off"
    )
    parser.add_argument("--rounds", type=int, default=6, help="--switch: pairs of rounds (on and off)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="rivya-chat-setup-"))
    upstream_port = free_port()
    env = gateway_env(args.config, workdir, upstream_port)
    key = setup_database(env, args.config)
    upstream = subprocess.Popen(
        [PYTHON, str(CHAT_STREAM), "upstream", "--port", str(upstream_port), "--interval", "0.001",
         "--chunks", "2", "--first-delay", "0.002"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_listening(upstream_port)
        os.environ.clear()
        os.environ.update(env)
        count_hops_and_threads()
        import uvloop

        from config.asgi import application

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(drive(application, key, 20, warm_up=0))
        spy = profile_self(600, args.profile) if args.profile else None
        if spy is not None:
            time.sleep(1.0)  # py-spy attaches
        main_profiler = None
        if args.cprofile:
            import cProfile

            profile_every_thread()
            main_profiler = cProfile.Profile(time.thread_time)
            main_profiler.enable()
        figures = loop.run_until_complete(drive(application, key, args.turns))
        if main_profiler is not None:
            main_profiler.disable()
            print_profile(main_profiler)
        if args.switch:
            figures.update(switch_rounds(application, key, args.switch, args.turns, args.rounds))
        if args.burst:
            figures.update(burst(application, key, args.burst, args.ramp))
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
    finally:
        upstream.terminate()
        upstream.wait()
    figures["config"] = args.config
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
