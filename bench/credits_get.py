"""CPU a ``GET /api/v1/credits`` costs the web process beside the bare DRF hello, measured in-process (issue 25, 6c).

    .venv/bin/python bench/credits_get.py [--config embedded|production] [--requests 2000] [--rounds 6]
        [--switch NAMESPACE.NAME] [--profile FILE] [--json]

Runs the project's ASGI application (``bench.settings``: the project's settings plus ``GET
/bench/hello`` and a rate limit that never says no, so the limiter still runs) in this process
and sends requests one after the other through it, as uvicorn would, alternating rounds of
``GET /bench/hello`` and ``GET /api/v1/credits`` (a real key, its account's wallet). CPU per
request is this process's CPU time (every thread) over the round; the figure to watch is
``credits_vs_hello`` (hello's CPU per request over ``/credits``'): the throughput ratio one CPU
would give. ``--switch`` runs both with a boolean setting on and off instead, in interleaved
rounds (on first in even rounds, off first in odd ones), and gives the median of each round's
difference too. ``--profile`` samples ``/credits`` rounds with py-spy (raw format).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_harness import setup_database  # noqa: E402
from bench.chat_setup import profile_self, switch_overrides  # noqa: E402


def environment(config: str, workdir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-only",
        "LOG_LEVEL": "WARNING",
        "RIVYA_IN_PROCESS_BEAT": "false",
    }
    if config == "production":
        if not (env.get("DATABASE_URL", "").startswith("postgres") and env.get("REDIS_URL")):
            raise SystemExit("--config production needs DATABASE_URL (PostgreSQL) and REDIS_URL")
        return env
    env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    env.pop("REDIS_URL", None)
    return env


def scope(path: str, key: str | None) -> dict:
    headers = [(b"host", b"127.0.0.1")]
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def one_request(app, path: str, key: str | None) -> int:
    status, sent, done = 0, False, asyncio.Event()

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # Django listens for the client leaving while it answers
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body"):
            done.set()

    await app(scope(path, key), receive, send)
    return status


async def cpu_ms_per_request(app, path: str, key: str | None, requests: int) -> float:
    cpu0 = time.process_time()
    for _ in range(requests):
        status = await one_request(app, path, key)
        if status != 200:
            raise SystemExit(f"GET {path}: {status}")
    return 1000 * (time.process_time() - cpu0) / requests


def rounds(loop, app, key: str, requests: int, count: int, switch: str | None) -> dict:
    from django.conf import settings
    from django.test import override_settings

    paths = (("hello", "/bench/hello", None), ("credits", "/api/v1/credits", key))
    if not switch:
        figures: dict[str, list[float]] = {"hello": [], "credits": []}
        for _ in range(count):
            for label, path, secret in paths:
                figures[label].append(loop.run_until_complete(cpu_ms_per_request(app, path, secret, requests)))
        medians: dict[str, Any] = {f"{name}_cpu_ms": round(statistics.median(v), 4) for name, v in figures.items()}
        medians["credits_vs_hello"] = round(medians["hello_cpu_ms"] / medians["credits_cpu_ms"], 3)
        return medians
    figures = {f"{label}_{state}": [] for label, _, _ in paths for state in ("on", "off")}
    for index in range(count):
        for value in (False, True) if index % 2 else (True, False):
            with override_settings(**switch_overrides(settings, switch, value)):
                for label, path, secret in paths:
                    ms = loop.run_until_complete(cpu_ms_per_request(app, path, secret, requests))
                    figures[f"{label}_{'on' if value else 'off'}"].append(ms)
    medians = {"switch": switch}
    medians.update({f"{name}_cpu_ms": round(statistics.median(v), 4) for name, v in figures.items()})
    for state in ("on", "off"):
        medians[f"credits_vs_hello_{state}"] = round(
            medians[f"hello_{state}_cpu_ms"] / medians[f"credits_{state}_cpu_ms"], 3
        )
    # Each round's on and off ran one after the other: their difference shrugs off slower spells.
    for label, _, _ in paths:
        saved = [off - on for on, off in zip(figures[f"{label}_on"], figures[f"{label}_off"], strict=True)]
        medians[f"{label}_saved_cpu_ms_median_of_rounds"] = round(statistics.median(saved), 4)
    medians["rounds"] = {name: [round(v, 4) for v in values] for name, values in figures.items()}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["embedded", "production"], default="production")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--switch", help="[NAMESPACE.]NAME of a boolean setting (or several, comma-separated)")
    parser.add_argument("--profile", type=Path, help="write py-spy's raw samples of /credits rounds here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    env = environment(args.config, Path(tempfile.mkdtemp(prefix="rivya-credits-get-")))
    key = setup_database(env, args.config)
    os.environ.clear()
    os.environ.update(env)
    import uvloop

    from config.asgi import application

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    for path, secret in (("/bench/hello", None), ("/api/v1/credits", key)):  # warm-up: imports, pools, caches
        loop.run_until_complete(cpu_ms_per_request(application, path, secret, 200))
    if args.profile:
        spy = profile_self(600, args.profile)
        time.sleep(1.0)  # py-spy attaches
        figures = {
            "profiled_credits_cpu_ms": loop.run_until_complete(
                cpu_ms_per_request(application, "/api/v1/credits", key, args.requests * args.rounds)
            )
        }
        spy.send_signal(2)
        spy.wait()
    else:
        figures = rounds(loop, application, key, args.requests, args.rounds, args.switch)
    figures["config"] = args.config
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
