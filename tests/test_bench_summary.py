"""The README's benchmark summary (bench/summary.py): which rows it keeps and how it writes them."""

from bench.summary import MARKERS, brief, readme_update, summary_table, target_of

INFO = {"cpus": 2, "cpu": "Test CPU", "date": "2026-12-07T00:00:00+00:00"}


def row(figure, measured, ratio=None, target="≤ 1", met=True):
    return {"figure": figure, "measured": measured, "baseline": "b", "ratio": ratio, "target": target, "met": met}


def test_rows_are_matched_to_the_issue_targets_they_judge():
    assert target_of("(25.3) many streams: 1000 at 1 chunk/s, production") == 3
    assert target_of("(1) GET /api/v1/credits throughput vs bare DRF hello") == 6
    assert target_of("(5) signed webhook deliveries/s, one worker (prefork, 4 children)") == 7
    assert target_of("(2) floor: a raw Celery task making a no-op generation's round trips") == 6
    assert target_of("(1) same, P99 latency") is None
    assert target_of("(3) streamed chat: added TTFT P50") is None


def test_details_in_parentheses_go_nested_ones_too():
    assert brief("0.140 ms (9 chunks (all open) in 3 s); whole run 0.2 ms") == "0.140 ms; whole run 0.2 ms"
    assert brief("a | b") == "a / b"


def test_the_table_keeps_target_rows_only_and_says_which_are_met():
    rows = [
        row("(25.1) gateway CPU per relayed chunk, embedded (fast)", "0.12 ms (n chunks)"),
        row("(1) same, P99 latency", "65 ms"),
        row("(1) GET /api/v1/credits throughput vs bare DRF hello", "471 req/s", ratio=0.44, met=False),
    ]
    table = summary_table(rows, INFO).splitlines()
    assert table[-2] == "| 1 | gateway CPU per relayed chunk, embedded | 0.12 ms | ≤ 1 | yes |"
    credits = "GET /api/v1/credits throughput vs bare DRF hello | 471 req/s (0.44× the baseline)"
    assert table[-1] == f"| 6 | {credits} | ≤ 1 | **no** |"
    assert not any("P99 latency" in line for line in table)


def test_the_readme_is_rewritten_between_its_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{MARKERS[0]}\nold\n{MARKERS[1]}\ntail\n")
    assert readme_update("new table", readme)
    assert readme.read_text() == f"# Title\n{MARKERS[0]}\nnew table\n{MARKERS[1]}\ntail\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not readme_update("new table", plain)
    assert plain.read_text() == "no markers\n"
