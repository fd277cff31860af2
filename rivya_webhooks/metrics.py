"""Prometheus metrics of webhook delivery (no-ops without prometheus_client).

This app must not import ``rivya_api``, so it keeps its own few metrics; they
share the process's registry and the ``PROMETHEUS_MULTIPROC_DIR`` files with the
rest, so the host's ``/metrics`` (``rivya_api.metrics``) shows them with the others.
"""

from __future__ import annotations

try:
    from prometheus_client import Counter, Histogram
except ImportError:  # metrics are optional for a host project
    Counter = Histogram = None

if Counter is not None:
    ATTEMPTS = Counter(
        "rivya_webhook_attempts_total",
        "Webhook delivery attempts by outcome: success, or the error (http_status, timeout, connect …).",
        ["outcome"],
    )
    ATTEMPT_LATENCY = Histogram(
        "rivya_webhook_attempt_duration_seconds",
        "Time from sending a webhook request to its response or error.",
        ["outcome"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    )
    DELIVERIES = Counter(
        "rivya_webhook_deliveries_total",
        "Webhook deliveries that reached a final state (succeeded, or failed after the last retry).",
        ["outcome"],
    )
    DELIVERY_DELAY = Histogram(
        "rivya_webhook_delivery_delay_seconds",
        "Time from an event being published to its delivery succeeding, per endpoint.",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0),
    )


def webhook_attempt_observe(*, outcome: str, seconds: float) -> None:
    """One attempt was recorded; ``outcome`` is ``success`` or its error code."""
    if Counter is not None:
        ATTEMPTS.labels(outcome=outcome).inc()
        ATTEMPT_LATENCY.labels(outcome=outcome).observe(max(seconds, 0.0))


def webhook_delivery_finished(*, outcome: str, delay_seconds: float | None = None) -> None:
    """A delivery reached ``succeeded`` (with its delay since publishing) or ``failed``."""
    if Counter is not None:
        DELIVERIES.labels(outcome=outcome).inc()
        if delay_seconds is not None:
            DELIVERY_DELAY.observe(max(delay_seconds, 0.0))
