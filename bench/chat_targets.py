"""The chat rows of issue 25 for ``bench/run.py``: targets 1–5 and 8, from their scripts' JSON.

- ``bench/chat_stream.py overhead --config production``: target 5 (added TTFT, production);
- ``bench/chat_waves.py suite``: fast streams (targets 1, 2), many streams (3), a burst (4), each in
  the embedded and the production configuration; in production each wave also checks target 8.

Both also run the turn's floor (``--floor``: ``POST /bench/turn-floor``, ``bench/turn_floor.py``, a
turn's round trips and none of our work) on the same gateway process: its rows ("(25.4) floor",
"(25.5) floor") report what a bare Django/uvicorn/httpx turn costs, bounding targets 4 and 5.

A row whose script failed says why instead of a figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CONFIGS = ("embedded", "production")
NAN = float("nan")


def row(name: str, measured: Any, baseline: Any, target: str, met: bool | None) -> dict[str, Any]:
    return {"figure": name, "measured": measured, "baseline": baseline, "ratio": None, "target": target, "met": met}


def run_chat_targets(sub_benchmark: Callable[..., Any], env: dict[str, str], *, quick: bool) -> dict[str, Any]:
    """Run the scripts (``quick``: smoke sizes, a few minutes); their JSON by name."""
    turns = ["--turns", "10", "--chunks", "8"] if quick else ["--turns", "200", "--chunks", "16"]
    overhead = sub_benchmark(
        "chat_stream.py", ["overhead", "--config", "production", "--floor", "--json", *turns], env, 1200
    )
    waves = sub_benchmark("chat_waves.py", ["suite", "--floor", "--json", *(["--quick"] if quick else [])], env, 1500)
    return {"chat_overhead_production": overhead, "chat_waves": waves}


def chat_target_rows(subs: dict[str, Any]) -> list[dict[str, Any]]:
    waves, over = subs.get("chat_waves"), subs.get("chat_overhead_production")
    rows: list[dict[str, Any]] = []
    if isinstance(waves, dict):
        for config in CONFIGS:
            rows.append(cpu_row(waves.get(f"fast/{config}"), config))
        for config in CONFIGS:
            rows.append(fast_row(waves.get(f"fast/{config}"), config))
        for config in CONFIGS:
            rows.append(many_row(waves.get(f"many/{config}"), config))
        for config in CONFIGS:
            rows.append(burst_row(waves.get(f"burst/{config}"), config))
            rows.append(floor_burst_row(waves.get(f"burst/{config}"), config))
    else:
        rows.append(row("(25.1–4) chat waves (bench/chat_waves.py)", waves, "–", "issue 25", None))
    rows.append(ttft_row(over))
    rows.append(floor_ttft_row(over))
    rows.append(silent_row(waves if isinstance(waves, dict) else {}, over))
    return rows


def clients(f: dict) -> str:
    """The load's own cost and gaps: the baseline that shows the client was not what was measured."""
    d, g = f["direct"], f["gateway"]
    shares = "/".join(f"{share * 100:.0f}" for share in g["client_cpu_share"])
    return (
        f"direct: gap over pace P99 {d['gap_p99_ms']:.1f} ms, TTFT P99 {d['ttft_p99_ms']:.0f} ms; "
        f"{len(g['client_cpu_share'])} client processes at {shares}% of a core, "
        f"upstream {g['upstream_cpu_share'] * 100:.0f}%"
    )


def cpu_row(f: dict | None, config: str) -> dict[str, Any]:
    name = f"(25.1) gateway CPU per relayed chunk, {config} (fast streams, while all are open)"
    if not f:
        return row(name, "not available", "–", "≤ 0.15 ms", None)
    g = f["gateway"]
    held = g["holding_cpu_ms_per_chunk"]
    measured = (
        f"{held:.3f} ms ({g['holding_chunks']} chunks in {g['holding_seconds']:.1f} s, gateway at "
        f"{g['holding_cpu_share'] * 100:.0f}% of its CPU); whole run {g['cpu_ms_per_chunk']:.3f} ms a chunk, "
        f"setup and settling included"
        if held
        else f"no window with every stream open; whole run {g['cpu_ms_per_chunk']:.3f} ms a chunk"
    )
    overlapped = g["holding_seconds"] >= planned_window(f) / 2
    if held and not overlapped:  # the streams opened late: a short window, mostly spent waiting on setups
        measured += f" (too short a window: {planned_window(f):.1f} s planned)"
    # No window at all (the last stream opened after the first ended) is not a target met either.
    return row(name, measured, clients(f), "≤ 0.15 ms", bool(held) and held <= 0.15 and overlapped)


def planned_window(f: dict) -> float:
    """Seconds every stream should be open at once, were each to open and pace on time."""
    p = f["params"]
    return (p["chunks"] - 1) * p["interval"] - p["ramp"]


def gap_met(f: dict) -> bool:
    # Streams that opened late overlap less: a short window would judge too few gaps.
    overlapped = f["gateway"]["holding_seconds"] >= planned_window(f) / 2
    return f["clean"] and overlapped and f["added_gap_p99_ms"] <= 20


def wave_outcome(f: dict) -> str:
    g = f["gateway"]
    return (
        f"{g['completed']}/{g['streams']} completed, merged/dropped {g['merged']}/{g['dropped']}; added gap P99 "
        f"{f['added_gap_p99_ms']:+.1f} ms (gateway {g['gap_p99_ms']:.1f} ms over pace, {g['holding_seconds']:.1f} s "
        f"with all open of {planned_window(f):.1f} s planned; whole run {g['whole_gap_p99_ms']:.1f} ms); "
        f"TTFT P99 {g['ttft_p99_ms']:.0f} ms"
    )


def fast_row(f: dict | None, config: str) -> dict[str, Any]:
    if not f:
        return row(f"(25.2) fast streams, {config}", "not available", "–", "all, ≤ +20 ms", None)
    p = f["params"]
    name = f"(25.2) fast streams: {p['streams']} at {1 / p['interval']:.0f} chunks/s on one process, {config}"
    return row(name, wave_outcome(f), clients(f), "all complete, 0/0, ≤ +20 ms", gap_met(f))


def many_row(f: dict | None, config: str) -> dict[str, Any]:
    if not f:
        return row(f"(25.3) many streams, {config}", "not available", "–", "all, ≤ +20 ms, ≤ 100 KiB", None)
    p, g = f["params"], f["gateway"]
    name = f"(25.3) many streams: {p['streams']} at 1 chunk/s opened over {p['ramp']:.0f} s, {config}"
    per_stream = f["memory_kib_per_stream"]
    memory = (
        f"; memory {per_stream:.0f} KiB per open stream (RSS {g['rss_start_mb']:.0f} → "
        f"{g['rss_holding_peak_mb']:.0f} MB)"
        if per_stream is not None
        else "; memory –"
    )
    met = gap_met(f) and per_stream is not None and per_stream <= 100
    return row(name, wave_outcome(f) + memory, clients(f), "all complete, ≤ +20 ms, ≤ 100 KiB/stream", met)


def burst_row(f: dict | None, config: str) -> dict[str, Any]:
    if not f:
        return row(f"(25.4) burst, {config}", "not available", "–", "TTFT P99 ≤ 1 s, ≤ 3 ms", None)
    p, g, d = f["params"], f["gateway"], f["direct"]
    name = f"(25.4) burst: {p['streams']} turns arriving within {p['ramp']:g} s, {config}"
    measured = (
        f"TTFT P50 / P99 {g['ttft_p50_ms']:.0f} / {g['ttft_p99_ms']:.0f} ms; gateway CPU {g['cpu_ms_per_turn']:.1f} ms "
        f"a turn ({p['chunks']} chunks and settling included: an upper bound of setup); gateway at "
        f"{(g.get('cpu_share_to_last_first_token') or float('nan')) * 100:.0f}% of its CPU until the last first token; "
        f"{g['completed']}/{g['streams']} completed{runqueue(g.get('runqueue_wait_s'), 's in all')}"
    )
    baseline = f"direct TTFT P50 / P99 {d['ttft_p50_ms']:.0f} / {d['ttft_p99_ms']:.0f} ms"
    met = f["clean"] and g["ttft_p99_ms"] <= 1000 and g["cpu_ms_per_turn"] <= 3
    return row(name, measured, baseline, "TTFT P99 ≤ 1 s, ≤ 3 ms CPU a turn", met)


FLOOR_GOAL = "report (bounds the row above)"


def floor_burst_row(f: dict | None, config: str) -> dict[str, Any]:
    """The same burst on the turn's floor, in the same gateway process right after the turn's."""
    name = f"(25.4) floor: the same burst on POST /bench/turn-floor (a turn's round trips, none of our work), {config}"
    if not f or "floor" not in f:
        return row(name, "not available", "–", FLOOR_GOAL, None)
    fl, g = f["floor"], f["gateway"]
    measured = (
        f"TTFT P50 / P99 {fl['ttft_p50_ms']:.0f} / {fl['ttft_p99_ms']:.0f} ms; gateway CPU {fl['cpu_ms_per_turn']:.1f} "
        f"ms a turn; {fl['completed']}/{fl['streams']} completed{runqueue(fl.get('runqueue_wait_s'), 's in all')}; "
        f"the turn costs {times(g['cpu_ms_per_turn'], fl['cpu_ms_per_turn'])} the floor's CPU, "
        f"its TTFT P99 is {times(g['ttft_p99_ms'], fl['ttft_p99_ms'])} the floor's"
    )
    baseline = f"the turn: TTFT P99 {g['ttft_p99_ms']:.0f} ms, CPU {g['cpu_ms_per_turn']:.1f} ms a turn"
    return row(name, measured, baseline, FLOOR_GOAL, None)


def times(turn: float, floor: float) -> str:
    return f"{turn / floor:.1f}×" if floor else "–"


def floor_ttft_row(over: Any) -> dict[str, Any]:
    """The floor's added TTFT, paired with the same rounds as the turn's (``overhead --floor``)."""
    name = "(25.5) floor: added TTFT P50 / P99 of POST /bench/turn-floor, production (same rounds, rotating order)"
    if not isinstance(over, dict) or "floor_added_ttft_p50_ms" not in over:
        return row(name, "not available", "–", FLOOR_GOAL, None)
    above_p50 = over["added_ttft_p50_ms"] - over["floor_added_ttft_p50_ms"]
    above_p99 = over["added_ttft_p99_ms"] - over["floor_added_ttft_p99_ms"]
    measured = (
        f"+{over['floor_added_ttft_p50_ms']:.1f} / +{over['floor_added_ttft_p99_ms']:.1f} ms "
        f"({over['floor_errors']} errors); the turn adds {above_p50:+.1f} / {above_p99:+.1f} ms over it"
    )
    baseline = f"the turn: +{over['added_ttft_p50_ms']:.1f} / +{over['added_ttft_p99_ms']:.1f} ms"
    return row(name, measured, baseline, FLOOR_GOAL, None)


def ttft_row(over: Any) -> dict[str, Any]:
    name = "(25.5) added TTFT P50 / P99, production configuration (paired, concurrency 1)"
    if not isinstance(over, dict):
        return row(name, over or "not available", "–", "≤ +5 / ≤ +12 ms", None)
    measured = (
        f"+{over['added_ttft_p50_ms']:.1f} / +{over['added_ttft_p99_ms']:.1f} ms ({over['turns']} turns); gateway "
        f"CPU {over['cpu_ms_per_turn']:.1f} ms a turn of {over.get('chunks', '?')} chunks (5 warm-up turns and "
        f"the idle time between turns included{'; the turn and its floor averaged' if 'floor_errors' in over else ''})"
        f"{runqueue(over.get('runqueue_wait_ms_per_turn'), 'ms a turn')}"
    )
    baseline = f"direct TTFT {over['direct_ttft_p50_ms']:.1f} ms"
    clean = over["errors"] == 0 and over["merged"] == 0 and over["dropped"] == 0 and over["log"]["error_lines"] == 0
    met = clean and over["added_ttft_p50_ms"] <= 5 and over["added_ttft_p99_ms"] <= 12
    return row(name, measured, baseline, "≤ +5 / ≤ +12 ms", met)


def runqueue(value: float | None, unit: str) -> str:
    """The gateway's wait for its CPU (absent from runs before it was measured)."""
    return "" if value is None else f"; gateway waited for its CPU {value:.2f} {unit}"


def silent_row(waves: dict[str, Any], over: Any) -> dict[str, Any]:
    """Target 8: in each production run, no error logged, every turn exact in Redis and on resume."""
    name = "(25.8) production runs: gateway log errors (mirror), turns exact in Redis, resumed exactly elsewhere"
    parts, met = [], True
    for key, f in sorted(waves.items()):
        if not key.endswith("/production"):
            continue
        log, streams = f["log"], f["gateway"]["streams"]
        parts.append(
            f"{key.split('/')[0]}: {log['error_lines']} ({log['mirror_errors']}), "
            f"{f['turns_exact_in_redis']}/{streams}, {f['followed_exact']}/{f['followed']}"
        )
        met = met and f["clean"]
    if isinstance(over, dict):
        parts.append(f"overhead: {over['log']['error_lines']} ({over['log']['mirror_errors']})")
        met = met and over["log"]["error_lines"] == 0
    if not parts:
        return row(name, "not available", "–", "0 errors, all exact", None)
    return row(name, "; ".join(parts), "–", "0 errors, all exact", met)
