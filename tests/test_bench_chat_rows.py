"""The chat rows of issue 25 (bench/chat_targets.py) and the harness's run-queue reading."""

import os

from bench.chat_harness import runqueue_seconds
from bench.chat_targets import ttft_row

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
