"""The chat upstream's read path alone, one of its switches on vs off, in interleaved rounds.

    .venv/bin/python bench/chat_upstream_read.py [--streams 20] [--chunks 200] [--interval 0.01] [--rounds 3]
        [--setting CHAT_UPSTREAM_ASYNCIO_NETWORK | CHAT_UPSTREAM_RAW_BODY | CHAT_UPSTREAM_SHARDED_POOL]

Starts the stand-in upstream (``bench/chat_stream.py upstream``) and, in this process on uvloop,
reads ``--streams`` concurrent replies through the upstream adapter
(``OpenAICompatibleChatProvider.stream``: httpx, httpcore, the network backend, the SSE split and
the JSON of each chunk), once with the ``--setting`` on and once off per round; prints this process's CPU time per
event. The connections are opened in a warm-up turn, so the figure is the read path's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


async def cpu_per_event(base_url: str, streams: int, setting: str, on: bool) -> float:
    from django.conf import settings
    from django.test import override_settings

    from rivya_api.chat.providers import openai_compatible
    from rivya_api.chat.providers.base import ChatRequest

    openai_compatible._clients.clear()
    with override_settings(RIVYA_API={**settings.RIVYA_API, setting: on}):
        provider = openai_compatible.OpenAICompatibleChatProvider(
            {"base_url": base_url, "upstream_model": "bench", "api_key": "bench"}
        )
        request = ChatRequest(messages=[{"role": "user", "content": "Count for me."}], max_output_tokens=1000)

        async def turn() -> int:
            return sum([1 async for _ in provider.stream(request)])

        await asyncio.gather(*(turn() for _ in range(streams)))  # warm-up: the pool's connections
        started = time.process_time()
        events = sum(await asyncio.gather(*(turn() for _ in range(streams))))
        return (time.process_time() - started) / events * 1e6


def main() -> None:
    import django
    import uvloop

    from bench.chat_harness import PYTHON, free_port, wait_listening

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--setting",
        default="CHAT_UPSTREAM_ASYNCIO_NETWORK",
        choices=["CHAT_UPSTREAM_ASYNCIO_NETWORK", "CHAT_UPSTREAM_RAW_BODY", "CHAT_UPSTREAM_SHARDED_POOL"],
    )
    args = parser.parse_args()
    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    port = free_port()
    upstream = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "chat_stream.py"), "upstream", "--port", str(port), "--interval",
         str(args.interval), "--chunks", str(args.chunks), "--first-delay", "0.01"],
        cwd=ROOT,
    )  # fmt: skip
    figures: dict[bool, list[float]] = {True: [], False: []}
    try:
        wait_listening(port)
        for round_ in range(args.rounds):
            for on in (False, True):
                figure = uvloop.run(cpu_per_event(f"http://127.0.0.1:{port}/v1", args.streams, args.setting, on))
                figures[on].append(figure)
                state = "on " if on else "off"
                print(f"round {round_ + 1}: {args.setting} {state} {figure:.1f} µs CPU an event", flush=True)
    finally:
        upstream.terminate()
        upstream.wait()
    on, off = statistics.median(figures[True]), statistics.median(figures[False])
    print(f"median: on {on:.1f} µs, off {off:.1f} µs an event ({on / off:.2f}×)")


if __name__ == "__main__":
    main()
