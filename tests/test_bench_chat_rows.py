"""The chat rows of issue 25 (bench/chat_targets.py), their floor rows, and the harness's run-queue reading."""

import os

from bench.chat_harness import runqueue_seconds
from bench.chat_targets import floor_burst_row, floor_ttft_row, ttft_row
from bench.summary import summary_table

OVERHEAD = {
    "added_ttft_p50_ms": 4.2,
    "added_ttft_p99_ms": 9.0,
    "turns": 200,
    "cpu_ms_per_turn": 30.0,
    "chunks": 16,
    "direct_ttft_p50_ms": 203.0,
    "errors": 0,
    "merged": 0,
    "dropped": 0,
    "log": {"error_lines": 0, "mirror_errors": 0, "first": []},
}


def test_the_ttft_row_shows_the_gateways_wait_for_its_cpu_when_measured():
    row = ttft_row({**OVERHEAD, "runqueue_wait_ms_per_turn": 1.25})
    assert row["met"] is True
    assert row["measured"].endswith("; gateway waited for its CPU 1.25 ms a turn")


def test_a_run_from_before_the_wait_was_measured_still_reads():
    row = ttft_row({**OVERHEAD, "added_ttft_p50_ms": 5.7})
    assert row["met"] is False
    assert "waited" not in row["measured"]


def test_runqueue_seconds_reads_this_process_and_nothing_for_a_missing_one():
    assert runqueue_seconds(os.getpid()) >= 0
    assert runqueue_seconds(2**22 + 12345) == 0


def burst_wave(**floor):
    turn = {"ttft_p50_ms": 900.0, "ttft_p99_ms": 1500.0, "cpu_ms_per_turn": 12.0}
    wave = {"gateway": turn}
    if floor:
        wave["floor"] = {"completed": 200, "streams": 200, "runqueue_wait_s": 0.5, **floor}
    return wave


def test_the_floor_burst_row_reports_the_floor_and_the_turn_as_a_multiple_of_it():
    row = floor_burst_row(burst_wave(ttft_p50_ms=400.0, ttft_p99_ms=750.0, cpu_ms_per_turn=4.0), "production")
    assert row["figure"].startswith("(25.4) floor:")
    assert row["target"] == "report (bounds the row above)"
    assert row["met"] is None
    assert "gateway CPU 4.0 ms a turn" in row["measured"]
    assert "the turn costs 3.0× the floor's CPU, its TTFT P99 is 2.0× the floor's" in row["measured"]
    assert row["baseline"] == "the turn: TTFT P99 1500 ms, CPU 12.0 ms a turn"


def test_a_burst_without_its_floor_says_so():
    assert floor_burst_row(burst_wave(), "embedded")["measured"] == "not available"
    assert floor_burst_row(None, "embedded")["measured"] == "not available"


def test_the_floor_ttft_row_reports_what_the_turn_adds_over_the_floor():
    over = {**OVERHEAD, "floor_added_ttft_p50_ms": 1.5, "floor_added_ttft_p99_ms": 4.0, "floor_errors": 0}
    row = floor_ttft_row(over)
    assert row["measured"] == "+1.5 / +4.0 ms (0 errors); the turn adds +2.7 / +5.0 ms over it"
    assert row["met"] is None
    assert "the turn and its floor averaged" in ttft_row(over)["measured"]
    assert floor_ttft_row(OVERHEAD)["measured"] == "not available"


def test_the_readme_shows_the_floor_rows_under_their_targets():
    rows = [floor_burst_row(burst_wave(ttft_p99_ms=700.0, ttft_p50_ms=1.0, cpu_ms_per_turn=5.0), "embedded")]
    rows.append(floor_ttft_row({**OVERHEAD, "floor_added_ttft_p50_ms": 1.0, "floor_added_ttft_p99_ms": 2.0,
                                "floor_errors": 0}))  # fmt: skip
    table = summary_table(rows, {"cpus": 2, "cpu": "test", "date": "2026-12-07"})
    assert "| 4 | floor: the same burst on POST /bench/turn-floor" in table
    assert "| 5 | floor: added TTFT P50 / P99 of POST /bench/turn-floor" in table
    assert table.count("report (bounds the row above) | – |") == 2
