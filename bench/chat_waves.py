"""Waves of streamed chat turns through one gateway process: fast streams, many streams, a burst.

    .venv/bin/python bench/chat_waves.py fast  [--config embedded|production|both] [--streams 200] [--chunks 200]
    .venv/bin/python bench/chat_waves.py many  [--config …] [--streams 1000] [--ramp 10] [--chunks 30]
    .venv/bin/python bench/chat_waves.py burst [--config …] [--streams 200] [--floor]
    .venv/bin/python bench/chat_waves.py suite --json   # all three in both configurations, for bench/run.py

The targets of issue 25 they measure:

- ``fast`` (targets 1, 2): ``--streams`` opened over ``--ramp`` seconds (default 2), chunks 50 ms
  apart (20 a second each, 4,000 a second for 200); all must complete, nothing merged or dropped,
  added gap P99 ≤ 20 ms; and the gateway's CPU-seconds per relayed chunk (target 1, ≤ 0.15 ms)
  while every stream is open (setup and settling are target 4's), with the whole run's beside it;
- ``many`` (target 3): 1,000 streams at 1 chunk/s opened over 10 s: all complete, added gap P99 ≤ 20
  ms, gateway memory growth ≤ 100 KiB per open stream (peak RSS while all are open, less the RSS
  after the warm-up, divided by the streams);
- ``burst`` (target 4): ``--streams`` turns arriving within one second (200 ms to the first token,
  2 chunks): TTFT P99 ≤ 1 s, and the gateway's CPU per turn (everything a turn costs with 2 chunks:
  an upper bound of its setup; target ≤ 3 ms). With ``--floor`` the same gateway process then takes
  the same burst on ``POST /bench/turn-floor`` (``bench/turn_floor.py``: a turn's round trips and
  none of our work), whose figures bound the turn's from below.

Every wave first runs the same load against the stand-in upstream directly (the baseline: what
the clients and upstream alone show; large gaps there mean the client was measured, not the
gateway), then through the gateway. Added gap = gateway's gap P99 over the pace, less the
baseline's. The load comes from ``--clients`` processes of ``bench/chat_client.py``; their CPU,
the upstream's and the gateway's are reported, with the gateway pinned to its own CPU (see
``bench/chat_harness.py``).

In the production configuration (target 8), after the wave: the gateway's log must hold no error
(ERROR, Traceback, "Could not mirror"); every turn's events in Redis must equal what its client
received; and a second gateway process resumes a sample of the turns
(``GET /api/v1/chat/sessions/{id}/stream`` with ``Last-Event-ID: 0``, served from Redis since
that process never ran them), each of which must match the client's events exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_client import stream_turn  # noqa: E402
from bench.chat_harness import CONFIGS, PYTHON, Harness, cpu_seconds  # noqa: E402

MODES = {  # pace (s), chunks, streams, ramp (s), client processes
    "fast": {"interval": 0.05, "chunks": 200, "streams": 200, "ramp": 2.0, "clients": 4},
    "many": {"interval": 1.0, "chunks": 30, "streams": 1000, "ramp": 10.0, "clients": 4},
    "burst": {"interval": 0.02, "chunks": 2, "streams": 200, "ramp": 1.0, "clients": 2},
}
QUICK = {  # a smoke run: every figure, none of them meaningful
    "fast": {"streams": 20, "chunks": 60, "ramp": 0.5, "clients": 2},
    "many": {"streams": 50, "ramp": 2.0, "chunks": 6, "clients": 2},
    "burst": {"streams": 20},
}
FOLLOW_SAMPLE = 20  # turns resumed through the second gateway process
FLOOR_PATH = "/bench/turn-floor"  # bench/turn_floor.py


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


# --- load --------------------------------------------------------------------------------


def load(h: Harness, *, direct: bool, streams: int, ramp: float, clients: int, keep: bool, path: str = "") -> dict:
    """One wave from ``clients`` processes; returns the turns, the clients' CPU and the samples taken."""
    t0 = time.perf_counter() + 1.5  # every client process is up by then
    target = f"127.0.0.1:{h.upstream_port if direct else h.gateway_port}"
    procs, outs = [], []
    for index in range(clients):
        out = h.workdir / f"client-{'direct' if direct else 'gateway'}-{index}.json"
        command = [PYTHON, str(ROOT / "bench" / "chat_client.py"), "--target", target, "--streams", str(streams),
                   "--ramp", str(ramp), "--t0", repr(t0), "--index", str(index), "--clients", str(clients),
                   "--out", str(out), "--sample", str(streams if keep else 0)]  # fmt: skip
        if not direct:
            command += ["--key", h.key, *(["--path", path] if path else [])]
        procs.append(subprocess.Popen(command, cwd=ROOT, env=h.env))
        outs.append(out)

    def sample() -> tuple:  # (perf_counter, gateway CPU-s, RSS MB, upstream CPU-s, each client's CPU-s)
        return (*h.sample(), *(cpu_seconds(proc.pid) for proc in procs))

    samples = [sample()]
    while any(proc.poll() is None for proc in procs):
        time.sleep(0.25)
        samples.append(sample())
    time.sleep(1.0)  # the last turns settle (their charge) after the client has [DONE]
    samples.append(sample())
    failed = [proc.args for proc in procs if proc.returncode]
    if failed:
        raise RuntimeError(f"a client process failed: {failed[0]}")
    results = [json.loads(out.read_text()) for out in outs]
    turns = sorted((t for r in results for t in r["turns"]), key=lambda t: t["index"])
    cpu = [r["cpu_seconds"] / r["wall_seconds"] for r in results]
    return {"turns": turns, "client_cpu_share": cpu, "samples": samples, "clients": clients}


def cpu_at(samples: list[tuple], at: float, column: int = 1) -> float:
    """A process's CPU-seconds at ``at``, interpolated between samples."""
    before = max((s for s in samples if s[0] <= at), key=lambda s: s[0], default=samples[0])
    after = min((s for s in samples if s[0] >= at), key=lambda s: s[0], default=samples[-1])
    if after[0] == before[0]:
        return before[column]
    return before[column] + (after[column] - before[column]) * (at - before[0]) / (after[0] - before[0])


# --- figures -----------------------------------------------------------------------------


def exact(turn: dict, chunks: int) -> tuple[int, int]:
    """(merged, dropped) of one turn: events carrying more than one upstream chunk; chunks missing or out of order."""
    expected = [f"c{i:02d}" for i in range(chunks)]
    known = set(expected)
    texts = turn.get("texts") or []
    merged = sum(1 for text in texts if text not in known)
    joined, position, found = "".join(texts), 0, 0
    for want in expected:
        if joined.startswith(want, position):
            position += len(want)
            found += 1
    return merged, len(expected) - found


def gap_figures(turns: list[dict], interval: float) -> dict:
    """Gaps over the pace (ms): over the whole run, and while every stream is open."""
    ok = [t for t in turns if "error" not in t and t["arrivals"]]
    whole = [(b - a - interval) * 1000 for t in ok for a, b in zip(t["arrivals"], t["arrivals"][1:], strict=False)]
    begin = max((t["arrivals"][0] for t in ok), default=0.0)
    end = min((t["arrivals"][-1] for t in ok), default=0.0)
    held = [
        (b - a - interval) * 1000
        for t in ok
        for a, b in zip(t["arrivals"], t["arrivals"][1:], strict=False)
        if begin <= a and b <= end
    ]
    chunks_held = sum(1 for t in ok for a in t["arrivals"] if begin <= a <= end)
    return {
        "begin": begin,
        "end": end,
        "holding_seconds": max(0.0, end - begin),
        "holding_gaps": len(held),
        "holding_chunks": chunks_held,
        "gap_p50_ms": percentile(held, 50),
        "gap_p99_ms": percentile(held, 99),
        "gap_max_ms": max(held, default=float("nan")),
        "whole_gap_p99_ms": percentile(whole, 99),
        "whole_gap_max_ms": max(whole, default=float("nan")),
    }


def load_shares(run: dict, gaps: dict) -> tuple[float, list[float]]:
    """The upstream's and each client's share of a core: while all streams are open, else the whole run."""
    samples = run["samples"]
    if gaps["holding_seconds"] >= 1.0:
        begin, end, span = gaps["begin"], gaps["end"], gaps["holding_seconds"]
        upstream = (cpu_at(samples, end, 3) - cpu_at(samples, begin, 3)) / span
        shares = [(cpu_at(samples, end, 4 + i) - cpu_at(samples, begin, 4 + i)) / span for i in range(run["clients"])]
        return round(upstream, 3), [round(share, 3) for share in shares]
    wall = samples[-1][0] - samples[0][0]
    upstream = (samples[-1][3] - samples[0][3]) / wall if wall else float("nan")
    return round(upstream, 3), [round(share, 3) for share in run["client_cpu_share"]]


def wave_figures(run: dict, *, streams: int, chunks: int, interval: float) -> dict:
    turns, samples = run["turns"], run["samples"]
    ok = [t for t in turns if "error" not in t]
    errors = [t["error"] for t in turns if "error" in t]
    merged = sum(exact(t, chunks)[0] for t in ok)
    dropped = sum(exact(t, chunks)[1] for t in ok) + chunks * (streams - len(ok))
    ttft = [t["ttft"] * 1000 for t in ok if t["ttft"] is not None]
    late = [t["late"] * 1000 for t in ok if t.get("late") is not None]
    gaps = gap_figures(turns, interval)
    relayed = sum(len(t["texts"]) for t in ok)
    wall = samples[-1][0] - samples[0][0]
    gateway_cpu = samples[-1][1] - samples[0][1]
    held_cpu = cpu_at(samples, gaps["end"]) - cpu_at(samples, gaps["begin"]) if gaps["holding_seconds"] else 0.0
    upstream_share, client_shares = load_shares(run, gaps)
    last_first_token = max((t["start"] + t["ttft"] for t in ok if t["ttft"] is not None), default=samples[-1][0])
    first_start = min((t["start"] for t in ok), default=samples[0][0])
    setup_span = last_first_token - first_start  # from the first turn sent to the last first token
    return {
        "streams": streams,
        "completed": sum(1 for t in ok if exact(t, chunks) == (0, 0)),
        "errors": len(errors),
        "first_errors": errors[:3],
        "merged": merged,
        "dropped": dropped,
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p99_ms": percentile(ttft, 99),
        **gaps,
        "chunks_relayed": relayed,
        "cpu_seconds": gateway_cpu,
        "cpu_share": gateway_cpu / wall if wall else float("nan"),
        "cpu_ms_per_chunk": 1000 * gateway_cpu / relayed if relayed else float("nan"),
        "holding_cpu_ms_per_chunk": 1000 * held_cpu / gaps["holding_chunks"] if gaps["holding_chunks"] else None,
        "holding_cpu_share": held_cpu / gaps["holding_seconds"] if gaps["holding_seconds"] else None,
        "cpu_ms_per_turn": 1000 * gateway_cpu / streams,
        "cpu_ms_per_turn_to_last_first_token": 1000 * (cpu_at(samples, last_first_token) - samples[0][1]) / streams,
        "cpu_share_to_last_first_token": (cpu_at(samples, last_first_token) - cpu_at(samples, first_start)) / setup_span
        if setup_span > 0
        else None,
        "upstream_cpu_share": upstream_share,
        "client_cpu_share": client_shares,
        "client_late_p99_ms": percentile(late, 99),
        "rss_start_mb": samples[0][2],
        "rss_holding_peak_mb": max((s[2] for s in samples if gaps["begin"] <= s[0] <= gaps["end"]), default=None),
        "rss_peak_mb": max(s[2] for s in samples),
    }


# --- target 8: nothing lost on the way to Redis ---------------------------------------------


def redis_events(client, session_id: str) -> list[tuple[int, str]] | None:
    """The events of the session's latest turn as mirrored to Redis; None if not there."""
    turn_id = client.get(f"rivya:chat:session:{session_id}")
    if turn_id is None:
        return None
    entries = client.xrange(f"rivya:chat:turn:{turn_id}")
    return [(int(entry_id.split("-")[0]), fields["d"]) for entry_id, fields in entries if entry_id != "0-1"]


def mirror_check(h: Harness, turns: list[dict]) -> dict:
    """Every completed turn's events in Redis, compared with what its client received."""
    import redis

    client = redis.Redis.from_url(h.env["REDIS_URL"], decode_responses=True)
    ok = [t for t in turns if "error" not in t and t.get("session")]
    exact_turns = sum(1 for t in ok if redis_events(client, t["session"]) == [tuple(e) for e in t["events"]])
    return {"turns_checked": len(ok), "turns_exact_in_redis": exact_turns}


def difference(received: list, resumed: dict) -> str | None:
    """None if the resume gave exactly the events the client received; else where they differ."""
    if "error" in resumed:
        return resumed["error"]
    want, got = [tuple(e) for e in received], [tuple(e) for e in resumed["events"]]
    if want == got:
        return None
    at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
    return f"{len(got)} events resumed, {len(want)} received; first difference at {at}: {got[at : at + 1]!r:.200}"


def follow_check(h: Harness, turns: list[dict], sample: int = FOLLOW_SAMPLE) -> dict:
    """Resume a sample of the turns through a second gateway process (from Redis: it never ran them)."""
    ok = [t for t in turns if "error" not in t and t.get("session")]
    chosen = ok[:: max(1, len(ok) // sample)][:sample]
    port, log = h.start_follower_gateway()
    headers = {"Authorization": f"Bearer {h.key}", "Last-Event-ID": "0"}

    async def resume_all() -> list[dict]:
        return await asyncio.gather(
            *(
                stream_turn("127.0.0.1", port, f"/api/v1/chat/sessions/{t['session']}/stream", headers,
                            keep_events=True, method="GET")
                for t in chosen
            )
        )  # fmt: skip

    resumed = asyncio.run(resume_all())
    problems = [difference(t["events"], r) for t, r in zip(chosen, resumed, strict=True)]
    exact_turns = sum(1 for problem in problems if problem is None)
    problems = [problem for problem in problems if problem is not None]
    time.sleep(0.5)
    follower_errors = h.log_errors(log)["error_lines"]
    return {
        "followed": len(chosen),
        "followed_exact": exact_turns,
        "follow_problems": problems[:3],
        "follower_log_errors": follower_errors,
    }


# --- one wave ------------------------------------------------------------------------------


def run_wave(mode: str, config: str, params: dict) -> dict:
    streams, ramp, clients, chunks = params["streams"], params["ramp"], params["clients"], params["chunks"]
    interval = params["interval"]
    production, floor = config == "production", bool(params.get("floor"))
    with Harness(config, interval=interval, chunks=chunks, floor=floor) as h:
        say(f"{mode} / {config}: {streams} streams over {ramp:g} s, {chunks} chunks {interval * 1000:g} ms apart, "
            f"{clients} client processes; {h.placement()}")  # fmt: skip
        load(h, direct=False, streams=min(5, streams), ramp=0.5, clients=1, keep=False)  # warm-up: imports, pools
        base = load(h, direct=True, streams=streams, ramp=ramp, clients=clients, keep=False)
        waited = h.runqueue_wait()
        run = load(h, direct=False, streams=streams, ramp=ramp, clients=clients, keep=production)
        waited = h.runqueue_wait() - waited
        floor_run, floor_waited = (floor_wave(h, streams=streams, ramp=ramp, clients=clients) if floor
                                   else (None, None))  # fmt: skip
        figures = {
            "mode": mode,
            "config": config,
            "placement": h.placement(),
            "params": params,
            "direct": wave_figures(base, streams=streams, chunks=chunks, interval=interval),
            "gateway": wave_figures(run, streams=streams, chunks=chunks, interval=interval),
        }
        figures["gateway"]["runqueue_wait_s"] = waited  # runnable, not running: CPU contention, not cost
        if floor_run is not None:
            figures["floor"] = wave_figures(floor_run, streams=streams, chunks=chunks, interval=interval)
            figures["floor"]["runqueue_wait_s"] = floor_waited
        if production:
            time.sleep(1.0)  # the mirror writes the last events after the client has them
            figures.update(mirror_check(h, run["turns"]))
            figures.update(follow_check(h, run["turns"]))
        figures["log"] = h.log_errors()
    gateway, direct = figures["gateway"], figures["direct"]
    figures["added_gap_p99_ms"] = gateway["gap_p99_ms"] - direct["gap_p99_ms"]
    figures["memory_kib_per_stream"] = (
        1024 * (gateway["rss_holding_peak_mb"] - gateway["rss_start_mb"]) / streams
        if gateway["rss_holding_peak_mb"] is not None
        else None
    )
    figures["clean"] = clean(figures)
    print_wave(figures)
    return figures


def floor_wave(h: Harness, *, streams: int, ramp: float, clients: int) -> tuple[dict, float]:
    """The same wave on the turn's floor (after the turn's: its log errors count too); its run-queue wait."""
    load(h, direct=False, streams=min(5, streams), ramp=0.5, clients=1, keep=False, path=FLOOR_PATH)  # warm-up
    waited = h.runqueue_wait()
    run = load(h, direct=False, streams=streams, ramp=ramp, clients=clients, keep=False, path=FLOOR_PATH)
    return run, h.runqueue_wait() - waited


def clean(figures: dict) -> bool:
    """All complete, nothing merged or dropped, no error logged; in production every turn exact in Redis."""
    g = figures["gateway"]
    ok = g["completed"] == g["streams"] and not (g["errors"] or g["merged"] or g["dropped"])
    ok = ok and figures["log"]["error_lines"] == 0
    if figures["config"] == "production":
        ok = ok and figures["turns_exact_in_redis"] == g["streams"]
        ok = ok and figures["followed_exact"] == figures["followed"] > 0 and figures["follower_log_errors"] == 0
    return ok


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_wave(f: dict) -> None:
    g, d = f["gateway"], f["direct"]
    fmt = "{:.1f}".format
    lines = [
        f"## {f['mode']} / {f['config']} ({f['placement']})",
        "| figure | direct (baseline) | gateway |",
        "| --- | --- | --- |",
        f"| completed / errors | {d['completed']} / {d['errors']} "
        f"| {g['completed']} / {g['errors']} {g['first_errors']} |",
        f"| merged / dropped | {d['merged']} / {d['dropped']} | {g['merged']} / {g['dropped']} |",
        f"| TTFT P50 / P99 (ms) | {fmt(d['ttft_p50_ms'])} / {fmt(d['ttft_p99_ms'])} "
        f"| {fmt(g['ttft_p50_ms'])} / {fmt(g['ttft_p99_ms'])} |",
        f"| gap over pace while all open P50 / P99 / max (ms) | {fmt(d['gap_p50_ms'])} / {fmt(d['gap_p99_ms'])} / "
        f"{fmt(d['gap_max_ms'])} | {fmt(g['gap_p50_ms'])} / {fmt(g['gap_p99_ms'])} / {fmt(g['gap_max_ms'])} "
        f"({g['holding_seconds']:.1f} s, {g['holding_gaps']} gaps) |",
        f"| gap over pace P99, whole run (ms) | {fmt(d['whole_gap_p99_ms'])} | {fmt(g['whole_gap_p99_ms'])} |",
        f"| gateway CPU: ms per chunk while all open / whole run; ms per turn | – | "
        f"{g['holding_cpu_ms_per_chunk'] or float('nan'):.3f} / {g['cpu_ms_per_chunk']:.3f}; "
        f"{g['cpu_ms_per_turn']:.1f} |",
        f"| gateway CPU share (of one core) while all open / whole run | – | "
        f"{g['holding_cpu_share'] or float('nan'):.2f} / {g['cpu_share']:.2f} |",
        f"| upstream CPU share; client processes' shares | {d['upstream_cpu_share']:.2f}; {d['client_cpu_share']} "
        f"| {g['upstream_cpu_share']:.2f}; {g['client_cpu_share']} |",
        f"| client start lag P99 (ms) | {fmt(d['client_late_p99_ms'])} | {fmt(g['client_late_p99_ms'])} |",
        f"| gateway RSS start / peak while all open / peak (MB) | – | {g['rss_start_mb']:.0f} / "
        f"{g['rss_holding_peak_mb'] or float('nan'):.0f} / {g['rss_peak_mb']:.0f} |",
        f"added gap P99 (gateway − direct): {f['added_gap_p99_ms']:+.1f} ms; memory per open stream: "
        f"{f['memory_kib_per_stream'] or float('nan'):.1f} KiB; log errors: {f['log']['error_lines']} "
        f"(mirror {f['log']['mirror_errors']}) {f['log']['first']}",
    ]
    if f["config"] == "production":
        lines.append(
            f"Redis: {f['turns_exact_in_redis']}/{f['turns_checked']} turns exact; resumed by another process: "
            f"{f['followed_exact']}/{f['followed']} exact {f['follow_problems']}"
        )
    if "floor" in f:
        fl = f["floor"]
        lines.append(
            f"floor (POST {FLOOR_PATH}, same process): {fl['completed']}/{fl['streams']} completed; TTFT P50 / P99 "
            f"{fmt(fl['ttft_p50_ms'])} / {fmt(fl['ttft_p99_ms'])} ms; gateway CPU "
            f"{fl['cpu_ms_per_turn']:.1f} ms a turn (the turn's {g['cpu_ms_per_turn']:.1f}); "
            f"waited for its CPU {fl['runqueue_wait_s']:.2f} s"
        )
    print("\n".join(lines) + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=[*MODES, "suite"])
    parser.add_argument("--config", choices=[*CONFIGS, "both"], default="both")
    parser.add_argument("--streams", type=int)
    parser.add_argument("--ramp", type=float)
    parser.add_argument("--chunks", type=int)
    parser.add_argument("--clients", type=int, help="load-generator processes")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--floor", action="store_true", help="burst: the same wave on the turn's floor too")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = parser.parse_args()
    modes = list(MODES) if args.mode == "suite" else [args.mode]
    configs = list(CONFIGS) if args.config == "both" else [args.config]
    figures: dict[str, dict] = {}
    for mode in modes:
        params = {**MODES[mode], **(QUICK[mode] if args.quick else {})}
        params.update({k: getattr(args, k) for k in ("streams", "ramp", "chunks", "clients") if getattr(args, k)})
        if args.floor and mode == "burst":
            params["floor"] = True
        for config in configs:
            figures[f"{mode}/{config}"] = run_wave(mode, config, params)
    if args.json:
        print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
