"""The README's short benchmark table: the performance issue's targets from the last full ``make bench``.

``bench/run.py`` writes the whole table to docs/benchmarks.md; the README shows the rows that judge
issue 25's eight targets, with each figure's details (in parentheses) left to that page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- readme-bench -->", "<!-- /readme-bench -->")
# Rows outside the "(25.N)" series that judge a target of issue 25, by the start of their figure.
OTHER_TARGETS = {
    "(1) GET /api/v1/credits throughput": 6,
    "(1) floor": 6,
    "(2) no-op generations": 6,
    "(2) floor": 6,
    "(2) PostgreSQL transactions": 6,
    "(5) signed webhook deliveries/s": 7,
}


def target_of(figure: str) -> int | None:
    match = re.match(r"\(25\.(\d)\)", figure)
    if match:
        return int(match.group(1))
    return next((n for start, n in OTHER_TARGETS.items() if figure.startswith(start)), None)


def brief(text: Any) -> str:
    """A cell without its parenthesised details (docs/benchmarks.md keeps them)."""
    previous, text = None, str(text)
    while previous != text:  # innermost first, so nested parentheses go too
        previous, text = text, re.sub(r"\s*\([^()]*\)", "", text)
    return text.replace("|", "/").strip()


def summary_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"From `make bench` on {info['cpus']} CPUs ({info['cpu']}), {info['date'][:10]}; every row of that run, "
        "with its baseline and details, is in [docs/benchmarks.md](docs/benchmarks.md).",
        "",
        "| target | figure | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        n = target_of(r["figure"])
        if n is None:
            continue
        measured = brief(r["measured"])
        if r["ratio"] is not None:
            measured += f" ({r['ratio']}× the baseline)"
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        lines.append(f"| {n} | {brief(r['figure'])} | {measured} | {r['target']} | {met} |")
    return "\n".join(lines)


def readme_update(table: str, readme: Path = ROOT / "README.md") -> bool:
    """Put ``table`` between the README's markers; False when the README has none."""
    text = readme.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    readme.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")
    return True
