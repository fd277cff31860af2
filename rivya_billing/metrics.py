"""Prometheus metrics of the ledger (no-ops without prometheus_client).

This app must not import ``rivya_api``, so it keeps its own metric; it shares the
process's registry and ``PROMETHEUS_MULTIPROC_DIR`` files with the rest, so the
host's ``/metrics`` (``rivya_api.metrics``) shows it with the others.
"""

from __future__ import annotations

try:
    from prometheus_client import Counter
except ImportError:  # metrics are optional for a host project
    Counter = None

if Counter is not None:
    LEDGER_OPERATIONS = Counter(
        "rivya_ledger_operations_total",
        "Ledger operations committed, by type (grant, reserve, settle, release, refund, adjust, expire …).",
        ["operation"],
    )
    SWEEP_ROW_FAILURES = Counter(
        "rivya_billing_sweep_row_failures_total",
        "Rows a billing sweep failed on and moved past (logged with their id), by sweep.",
        ["job"],
    )
    LEDGER_CREDITS = Counter(
        "rivya_ledger_credits_total",
        "Credits moved by committed ledger operations, by type.",
        ["operation"],
    )


def ledger_operation_observe(*, operation: str, credits: int = 0) -> None:
    """One ledger operation of type ``operation`` moving ``credits`` committed (call after commit)."""
    if Counter is not None:
        LEDGER_OPERATIONS.labels(operation=operation).inc()
        if credits:
            LEDGER_CREDITS.labels(operation=operation).inc(abs(credits))


def sweep_row_failed(*, job: str) -> None:
    if Counter is not None:
        SWEEP_ROW_FAILURES.labels(job=job).inc()
