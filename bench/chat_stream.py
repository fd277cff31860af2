"""What the gateway adds to a streamed chat turn, and how many open streams one web process holds.

    .venv/bin/python bench/chat_stream.py overhead [--turns 200] [--config embedded|production] [--floor]
    .venv/bin/python bench/chat_stream.py capacity [--streams 500] [--ramp 25] [--chunks 45] [--config …]

``--config production`` runs the gateway on PostgreSQL + Redis (``DATABASE_URL``,
``REDIS_URL``) with every turn mirrored to Redis, as deployed; the default, ``embedded``,
on a fresh SQLite database without Redis (``bench/chat_harness.py``). Either way the gateway
is pinned to one CPU and the rest to the others, and the gateway's CPU per turn and per
relayed chunk, the upstream's CPU and the error lines of the gateway's log are reported.
The fast, many and burst waves of issue 25 are in ``bench/chat_waves.py``.

Three processes besides this one, all on 127.0.0.1:

- a stand-in OpenAI-compatible upstream (uvicorn, one process): after 200 ms
  it streams 64 chunks 20 ms apart (``overhead``) or 1 s apart (``capacity``),
  then a usage chunk and ``[DONE]``; each chunk's text is unique (``c00``, ``c01`` …)
  so a merged or dropped chunk is visible;
- the gateway: ``uvicorn config.asgi:application``, one process, the project's
  settings and middleware, a fresh SQLite database (or PostgreSQL + Redis), the
  ``rivya-chat-plus`` model pointed at the stand-in;
- the load generator (``loadgen``), its own process, reporting its CPU use so it
  can be seen not to be the bottleneck.

``overhead``: ``--turns`` rounds at concurrency 1, each a direct request to the
stand-in and one through ``POST /api/v1/chat/completions``, alternating which
goes first. Added time-to-first-token is gateway minus direct per round
(first *content* chunk); added gap compares inter-chunk gaps; every content
event must carry exactly one upstream chunk, in order. ``--floor`` adds a third
request to each round, ``POST /bench/turn-floor`` on the same gateway process
(``bench/turn_floor.py``: a turn's round trips and none of our work), the order
rotating; its added TTFT bounds the turn's from below (the gateway's CPU a turn is
then the two kinds' average).

``capacity``: ``--streams`` turns opened through the gateway over ``--ramp``
seconds, chunks 1 s apart; the gateway's resident memory is sampled every
second; added gap is each observed gap minus the 1 s pace. The headline is
the added gap while the process *holds* every stream: from the first chunk of
the last stream to open until the last chunk of the first to end (each stream
is ``--chunks`` long, so that window lasts about ``chunks - ramp`` seconds).
Gaps over the whole run, while turns are still being accepted or settled, are
reported beside it: they measure how fast turns open, not how many stay open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable

from bench.chat_harness import CONFIGS, Harness  # noqa: E402

MODEL = "rivya-chat-plus"
WARM_UP_TURNS = 5


# --- the stand-in upstream (ASGI) -------------------------------------------------------------


def make_upstream(first_delay: float, interval: float, chunks: int):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass

        async def event(data: object) -> None:
            text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            await send({"type": "http.response.body", "body": f"data: {text}\n\n".encode(), "more_body": True})

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "bench",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await asyncio.sleep(first_delay)
        for index in range(chunks):
            if index:
                await asyncio.sleep(interval)
            delta = {"content": f"c{index:02d}"}
            if index == 0:
                delta["role"] = "assistant"
            await event(chunk(delta))
        await event(chunk({}, "stop"))
        usage = {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}
        await event({**chunk({}), "choices": [], "usage": usage})
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b""})

    return app


def serve_upstream(port: int, first_delay: float, interval: float, chunks: int) -> None:
    import uvicorn

    uvicorn.run(
        make_upstream(first_delay, interval, chunks),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        loop="uvloop",
        http="httptools",
        backlog=2048,
    )


# --- the load generator ----------------------------------------------------------------------


async def one_turn(client, url: str, headers: dict, body: dict) -> dict:
    start = time.perf_counter()
    arrivals: list[float] = []
    texts: list[str] = []
    usage = None
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return {"error": f"{response.status_code} {response.text[:200]}"}
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            payload = json.loads(data)
            if "error" in payload:
                return {"error": json.dumps(payload)[:200]}
            for choice in payload.get("choices") or []:
                content = choice.get("delta", {}).get("content")
                if content:
                    arrivals.append(time.perf_counter())
                    texts.append(content)
            if payload.get("usage"):
                usage = payload["usage"]
    return {
        "ttft": arrivals[0] - start if arrivals else None,
        "gaps": [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)],
        "arrivals": arrivals,  # this process's clock: comparable across its turns
        "texts": texts,
        "usage": usage,
        "total": time.perf_counter() - start,
    }


async def loadgen_overhead(args: argparse.Namespace) -> dict:
    import httpx

    direct_url = f"{args.upstream}/v1/chat/completions"
    gateway_url = f"{args.gateway}/api/v1/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count for me."}], "stream": True}
    headers = {"Authorization": f"Bearer {args.key}"}
    kinds = {"direct": (direct_url, {}), "gateway": (gateway_url, headers)}
    if args.floor:
        kinds["floor"] = (f"{args.gateway}/bench/turn-floor", headers)
    names = list(kinds)
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    async with httpx.AsyncClient(timeout=60) as client:
        for _warm in range(WARM_UP_TURNS):  # connections, imports, caches
            for url, hdrs in kinds.values():
                await one_turn(client, url, hdrs, body)
        for index in range(args.turns):
            shift = index % len(names)  # which goes first rotates
            for kind in names[shift:] + names[:shift]:
                url, hdrs = kinds[kind]
                results[kind].append(await one_turn(client, url, hdrs, body))
    return results


async def loadgen_capacity(args: argparse.Namespace) -> dict:
    import httpx

    gateway_url = f"{args.gateway}/api/v1/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count for me."}], "stream": True}
    headers = {"Authorization": f"Bearer {args.key}"}
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=args.streams + 10)
    done = 0

    async def progress() -> None:
        while True:
            await asyncio.sleep(5)
            print(f"loadgen: {done}/{args.streams} streams done", file=sys.stderr, flush=True)

    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def staggered(index: int) -> dict:
            nonlocal done
            await asyncio.sleep(index * args.ramp / args.streams)
            try:
                return await one_turn(client, gateway_url, headers, body)
            finally:
                done += 1

        reporter = asyncio.ensure_future(progress())
        turns = await asyncio.gather(*(staggered(i) for i in range(args.streams)), return_exceptions=True)
        reporter.cancel()
    return {"gateway": [t if isinstance(t, dict) else {"error": repr(t)} for t in turns]}


def run_loadgen(args: argparse.Namespace) -> None:
    import uvloop

    started = time.perf_counter()
    runner = loadgen_overhead if args.mode == "overhead" else loadgen_capacity
    results = uvloop.run(runner(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - started
    results["loadgen_cpu_share"] = (usage.ru_utime + usage.ru_stime) / wall
    print(json.dumps(results))


# --- orchestration -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def check_chunks(turn: dict, chunks: int) -> tuple[int, int]:
    """(merged, dropped) content events of one turn against the upstream's chunks."""
    expected = [f"c{i:02d}" for i in range(chunks)]
    texts = turn.get("texts") or []
    merged = sum(1 for text in texts if len(text) > 3)
    dropped = len(expected) - len("".join(texts)) // 3
    return merged, max(0, dropped)


def report_overhead(results: dict, chunks: int) -> dict:
    direct, gateway = results["direct"], results["gateway"]
    errors = [t["error"] for t in direct + gateway if "error" in t]
    pairs = [
        (d["ttft"], g["ttft"]) for d, g in zip(direct, gateway, strict=True) if "error" not in d and "error" not in g
    ]
    added_ttft = [(g - d) * 1000 for d, g in pairs] if pairs else []
    d_gaps = [gap * 1000 for t in direct if "gaps" in t for gap in t["gaps"]]
    g_gaps = [gap * 1000 for t in gateway if "gaps" in t for gap in t["gaps"]]
    merged = sum(check_chunks(t, chunks)[0] for t in gateway if "error" not in t)
    dropped = sum(check_chunks(t, chunks)[1] for t in gateway if "error" not in t)
    usage_ok = all(t.get("usage") and "credits" in t["usage"] for t in gateway if "error" not in t)
    print(f"turns: {len(gateway)} through the gateway, {len(direct)} direct, interleaved, concurrency 1")
    print(f"errors: {len(errors)} {errors[:3]}")
    print("| metric | direct | gateway | added |")
    print("| --- | --- | --- | --- |")
    for q in (50, 99):
        d = percentile([p[0] * 1000 for p in pairs], q)
        g = percentile([p[1] * 1000 for p in pairs], q)
        print(f"| TTFT P{q} (ms) | {d:.1f} | {g:.1f} | {percentile(added_ttft, q):+.1f} (paired) / {g - d:+.1f} |")
    for q in (50, 99):
        d, g = percentile(d_gaps, q), percentile(g_gaps, q)
        print(f"| inter-chunk gap P{q} (ms) | {d:.1f} | {g:.1f} | {g - d:+.1f} |")
    print(f"| chunks merged / dropped | - | {merged} / {dropped} | |")
    print(f"| usage chunk with credits in every turn | - | {usage_ok} | |")
    print(f"load generator CPU: {results['loadgen_cpu_share'] * 100:.0f}% of one core")
    return {
        **floor_overhead(direct, results.get("floor")),
        "turns": len(gateway),
        "errors": len(errors),
        "direct_ttft_p50_ms": percentile([p[0] * 1000 for p in pairs], 50),
        "gateway_ttft_p50_ms": percentile([p[1] * 1000 for p in pairs], 50),
        "added_ttft_p50_ms": percentile(added_ttft, 50),
        "added_ttft_p99_ms": percentile(added_ttft, 99),
        "direct_gap_p99_ms": percentile(d_gaps, 99),
        "gateway_gap_p99_ms": percentile(g_gaps, 99),
        "added_gap_p99_ms": percentile(g_gaps, 99) - percentile(d_gaps, 99),
        "merged": merged,
        "dropped": dropped,
        "usage_ok": usage_ok,
        "loadgen_cpu_share": results["loadgen_cpu_share"],
    }


def floor_overhead(direct: list[dict], floor: list[dict] | None) -> dict:
    """The floor's added TTFT, paired with the same rounds' direct requests (``--floor``)."""
    if floor is None:
        return {}
    pairs = [(d.get("ttft"), f.get("ttft")) for d, f in zip(direct, floor, strict=True)]
    added = [(f - d) * 1000 for d, f in pairs if d is not None and f is not None]
    errors = sum("error" in f for f in floor)
    print(f"floor: added TTFT P50 / P99 {percentile(added, 50):+.1f} / {percentile(added, 99):+.1f} ms (paired); "
          f"errors {errors}")  # fmt: skip
    return {
        "floor_added_ttft_p50_ms": percentile(added, 50),
        "floor_added_ttft_p99_ms": percentile(added, 99),
        "floor_errors": errors,
    }


def holding_window(turns: list[dict]) -> tuple[float, float]:
    """From the first chunk of the last stream to open until the last chunk of the first to end.

    In that window every stream is open and none is being accepted or settled:
    what the process does is hold them.
    """
    return max(t["arrivals"][0] for t in turns), min(t["arrivals"][-1] for t in turns)


def report_capacity(results: dict, rss_samples: list[tuple[float, float]], streams: int, chunks: int) -> dict:
    turns = results["gateway"]
    ok = [t for t in turns if "error" not in t]
    errors = [t["error"] for t in turns if "error" in t]
    added = [(gap - 1.0) * 1000 for t in ok for gap in t["gaps"]]
    ttft = [t["ttft"] * 1000 for t in ok if t["ttft"] is not None]
    merged = sum(check_chunks(t, chunks)[0] for t in ok)
    dropped = sum(check_chunks(t, chunks)[1] for t in ok)
    begin, end = holding_window(ok) if len(ok) == streams and all(t["arrivals"] for t in ok) else (0.0, 0.0)
    held = [
        (b - a - 1.0) * 1000
        for t in ok
        for a, b in zip(t["arrivals"], t["arrivals"][1:], strict=False)
        if begin <= a and b <= end
    ]
    rss = [mb for _, mb in rss_samples]
    rss_held = [mb for at, mb in rss_samples if begin <= at <= end]  # flat memory: no growth while holding
    print(f"streams: {streams} opened, {len(ok)} completed, {len(errors)} errors {errors[:3]}")
    print("| metric | value |")
    print("| --- | --- |")
    print(f"| TTFT P50 / P99 (ms; pace 200 ms) | {percentile(ttft, 50):.0f} / {percentile(ttft, 99):.0f} |")
    hold50, hold99, hold_max = percentile(held, 50), percentile(held, 99), max(held, default=float("nan"))
    print(
        f"| added gap while all {streams} are open: P50 / P99 / max (ms; {end - begin:.0f} s, {len(held)} gaps) "
        f"| {hold50:+.1f} / {hold99:+.1f} / {hold_max:+.1f} |"
    )
    gap50, gap99, gap_max = percentile(added, 50), percentile(added, 99), max(added, default=0)
    whole = f"{gap50:+.1f} / {gap99:+.1f} / {gap_max:+.1f}"
    print(f"| added gap over the whole run, opening and settling included | {whole} |")
    print(f"| chunks merged / dropped | {merged} / {dropped} |")
    if rss:
        print(f"| gateway RSS start / peak / end (MB) | {rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} |")
    if rss_held:
        print(f"| gateway RSS while all are open, first / last sample (MB) | {rss_held[0]:.1f} / {rss_held[-1]:.1f} |")
    print(f"load generator CPU: {results['loadgen_cpu_share'] * 100:.0f}% of one core")
    return {
        "streams": streams,
        "completed": len(ok),
        "errors": len(errors),
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p99_ms": percentile(ttft, 99),
        "holding_seconds": end - begin,
        "holding_gaps": len(held),
        "holding_added_gap_p50_ms": hold50,
        "holding_added_gap_p99_ms": hold99,
        "holding_added_gap_max_ms": hold_max,
        "added_gap_p50_ms": gap50,
        "added_gap_p99_ms": gap99,
        "added_gap_max_ms": gap_max,
        "merged": merged,
        "dropped": dropped,
        "rss_start_mb": rss[0] if rss else None,
        "rss_peak_mb": max(rss) if rss else None,
        "rss_end_mb": rss[-1] if rss else None,
        "rss_holding_first_mb": rss_held[0] if rss_held else None,
        "rss_holding_last_mb": rss_held[-1] if rss_held else None,
        "loadgen_cpu_share": results["loadgen_cpu_share"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    overhead = sub.add_parser("overhead")
    overhead.add_argument("--turns", type=int, default=200)
    overhead.add_argument("--chunks", type=int, default=64, help="fewer for a quick look at TTFT")
    overhead.add_argument("--floor", action="store_true", help="each round also through POST /bench/turn-floor")
    capacity = sub.add_parser("capacity")
    capacity.add_argument("--streams", type=int, default=500)
    capacity.add_argument("--chunks", type=int, default=45)
    capacity.add_argument("--ramp", type=float, default=25.0, help="seconds over which the streams open")
    both = sub.add_parser("all", help="overhead, then capacity; with --json, one JSON object for bench/run.py")
    both.add_argument("--turns", type=int, default=200)
    both.add_argument("--streams", type=int, default=500)
    both.add_argument("--chunks", type=int, default=45)
    both.add_argument("--ramp", type=float, default=25.0)
    for mode in (overhead, capacity, both):
        mode.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
        mode.add_argument("--config", choices=CONFIGS, default="embedded", help="see bench/chat_harness.py")
    upstream = sub.add_parser("upstream")
    upstream.add_argument("--port", type=int, required=True)
    upstream.add_argument("--first-delay", type=float, default=0.2)
    upstream.add_argument("--interval", type=float, default=0.02)
    upstream.add_argument("--chunks", type=int, default=64)
    loadgen = sub.add_parser("loadgen")
    loadgen.add_argument("--mode", choices=["overhead", "capacity"], required=True)
    loadgen.add_argument("--upstream", required=True)
    loadgen.add_argument("--gateway", required=True)
    loadgen.add_argument("--key", required=True)
    loadgen.add_argument("--turns", type=int, default=200)
    loadgen.add_argument("--streams", type=int, default=500)
    loadgen.add_argument("--ramp", type=float, default=25.0)
    loadgen.add_argument("--floor", action="store_true")
    args = parser.parse_args()

    if args.command == "upstream":
        serve_upstream(args.port, args.first_delay, args.interval, args.chunks)
        return
    if args.command == "loadgen":
        run_loadgen(args)
        return

    modes = ["overhead", "capacity"] if args.command == "all" else [args.command]
    figures = {mode: run_mode(mode, args) for mode in modes}
    if args.json:
        print(json.dumps(figures if args.command == "all" else figures[args.command]))


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """Start upstream and gateway, run the load generator in ``mode``, report; returns the figures."""
    chunks = args.chunks if mode == "capacity" or args.command == "overhead" else 64
    interval = 0.02 if mode == "overhead" else 1.0
    floor = bool(getattr(args, "floor", False)) and mode == "overhead"
    with Harness(args.config, interval=interval, chunks=chunks, floor=floor) as h:
        command = [PYTHON, __file__, "loadgen", "--mode", mode, "--upstream", f"http://127.0.0.1:{h.upstream_port}",
                   "--gateway", f"http://127.0.0.1:{h.gateway_port}", "--key", h.key]  # fmt: skip
        if mode == "overhead":
            command += ["--turns", str(args.turns), *(["--floor"] if floor else [])]
        else:
            command += ["--streams", str(args.streams), "--ramp", str(args.ramp)]
        output = h.workdir / "loadgen.json"
        with output.open("w") as sink:  # a file, not a pipe: the results are larger than a pipe's buffer
            loadgen = subprocess.Popen(command, cwd=ROOT, env=h.env, stdout=sink, text=True)
            # (perf_counter, gateway CPU-s, RSS MB, upstream CPU-s): the loadgen's arrival times use
            # the same system-wide clock.
            samples, waited = [], h.runqueue_wait()
            while loadgen.poll() is None:
                samples.append(h.sample())
                time.sleep(1)
        rss = [(at, mb) for at, _, mb, _ in samples]
        time.sleep(1)  # the last turn settles (its charge) after the client has [DONE]
        samples.append(h.sample())
        waited = h.runqueue_wait() - waited
        results = json.loads(output.read_text())
        log = h.log_errors()
        placement = h.placement()
    database = h.env["DATABASE_URL"].split(":")[0]
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; database {database}")
    print(f"configuration: {args.config}; {placement}")
    if mode == "overhead":
        figures = report_overhead(results, chunks)
        turns = (args.turns + WARM_UP_TURNS) * (2 if floor else 1)  # through the gateway, warm-up included
    else:
        figures = report_capacity(results, rss, args.streams, chunks)
        turns = args.streams
    return {
        **figures,
        **cost_figures(samples, turns, chunks, log),
        "config": args.config,
        "placement": placement,
        "chunks": chunks,
        "runqueue_wait_ms_per_turn": 1000 * waited / turns,  # the gateway runnable but not running
    }


def cost_figures(samples: list[tuple], turns: int, chunks: int, log: dict) -> dict:
    """The gateway's CPU per turn and per relayed chunk, the upstream's share, the log's errors."""
    wall = samples[-1][0] - samples[0][0]
    cpu = samples[-1][1] - samples[0][1]
    figures = {
        "gateway_cpu_seconds": cpu,
        "gateway_cpu_share": cpu / wall if wall else None,
        "cpu_ms_per_turn": 1000 * cpu / turns,
        "cpu_ms_per_chunk": 1000 * cpu / (turns * chunks),
        "upstream_cpu_share": (samples[-1][3] - samples[0][3]) / wall if wall else float("nan"),
        "log": log,
    }
    print(
        f"gateway CPU: {cpu:.1f} s, {figures['cpu_ms_per_turn']:.1f} ms a turn ({chunks} chunks), "
        f"{figures['cpu_ms_per_chunk']:.3f} ms a chunk (setup included); upstream CPU "
        f"{figures['upstream_cpu_share'] * 100:.0f}% of one core; gateway log: {log['error_lines']} error lines "
        f"({log['mirror_errors']} mirror) {log['first']}"
    )
    return figures


if __name__ == "__main__":
    main()
