"""Prometheus metrics of the API process and its Celery workers, and the ``/metrics`` view.

Every figure is recorded through a small function here (``http_request_observe``,
``generation_accepted`` …) so callers never touch prometheus_client themselves and
the functions are no-ops where prometheus_client is not installed (it is optional
for a host project; the reference project pins it).

Several processes, one view
    With ``PROMETHEUS_MULTIPROC_DIR`` set (``make stack`` sets it; it must name an
    empty directory when the first process starts, and every process of one
    machine must share it), prometheus_client keeps each process's values in
    memory-mapped files there, and ``/metrics`` adds up the files of all of them:
    every gunicorn worker and every Celery worker process on the machine. Dead
    processes' live gauges are dropped by ``mark_process_dead`` (gunicorn's
    ``child_exit`` hook in ``config/gunicorn.py``; Celery's
    ``worker_process_shutdown`` signal below). Without the variable, each process
    counts for itself only (the embedded default: one process).

Who may read it
    ``RIVYA_API["METRICS_TOKEN"]`` (``RIVYA_METRICS_TOKEN``): when set, ``/metrics``
    answers only requests sending ``Authorization: Bearer <token>``; when empty the
    view answers 404 and metrics are read instead from ``manage.py
    rivya_metrics_server --bind <internal address>``, an exporter of the same
    directory listening on an address only the monitoring network reaches.

Billing and webhooks keep their own metrics in ``rivya_billing.metrics`` and
``rivya_webhooks.metrics``, since they must not import this app; they land in the
same registry and the same directory, so this view shows them too.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

from rivya_api.conf import api_settings

logger = logging.getLogger(__name__)

try:
    import prometheus_client
    from prometheus_client import Counter, Gauge, Histogram
except ImportError:  # metrics are optional for a host project
    prometheus_client = None

# Seconds; from sub-millisecond cached GETs to long polls and slow uploads.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds; queue waits and run times of background work (local models take seconds, upstreams minutes).
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# Label of requests no URL pattern matched (so raw paths never become label values).
UNMATCHED_ROUTE = "<unmatched>"


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None when each process counts alone."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


if prometheus_client is not None:
    HTTP_REQUESTS = Counter(
        "rivya_http_requests_total",
        "HTTP requests answered, by method, URL pattern and status code.",
        ["method", "route", "status"],
    )
    HTTP_LATENCY = Histogram(
        "rivya_http_request_duration_seconds",
        "Time from the request entering the middleware to its response (headers, for streams).",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
    )
    BACKGROUND_ROW_FAILURES = Counter(
        "rivya_background_row_failures_total",
        "Rows a sweep or background job failed on and moved past (logged with their id), by job.",
        ["job"],
    )
    TASKS = Counter(
        "rivya_celery_tasks_total",
        "Celery tasks run, by task name and final state (SUCCESS, FAILURE, RETRY …).",
        ["task", "state"],
    )
    TASK_QUEUE_WAIT = Histogram(
        "rivya_celery_task_queue_wait_seconds",
        "Time from publishing a Celery task to a worker starting it.",
        ["task"],
        buckets=TASK_BUCKETS,
    )
    TASK_RUN = Histogram(
        "rivya_celery_task_run_seconds",
        "Time a Celery task ran in the worker.",
        ["task", "state"],
        buckets=TASK_BUCKETS,
    )
    GENERATIONS = Counter(
        "rivya_generations_total",
        "Generation tasks by model and status: accepted when queued, then their terminal status.",
        ["model", "status"],
    )
    GENERATION_QUEUE_WAIT = Histogram(
        "rivya_generation_queue_wait_seconds",
        "Time a generation waited between being queued and a worker starting it.",
        ["model"],
        buckets=TASK_BUCKETS,
    )
    GENERATION_RUN = Histogram(
        "rivya_generation_run_seconds",
        "Time from a worker starting a generation to its terminal status.",
        ["model", "status"],
        buckets=TASK_BUCKETS,
    )
    SSE_OPEN = Gauge(
        "rivya_sse_streams_open",
        "Server-sent event streams open now.",
        ["stream"],
        multiprocess_mode="livesum",
    )
    SSE_STREAMS = Counter("rivya_sse_streams_total", "Server-sent event streams opened.", ["stream"])


# --- HTTP ------------------------------------------------------------------------


def request_route(request: HttpRequest) -> str:
    """The URL pattern that answered ``request`` (``/api/v1/files/<str:file_id>``), never its raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED_ROUTE
    return "/" + match.route


def http_request_observe(*, method: str, route: str, status: int, seconds: float) -> None:
    if prometheus_client is None:
        return
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_LATENCY.labels(method=method, route=route).observe(seconds)


# --- Generations ---------------------------------------------------------------------


def generation_accepted(*, model: str) -> None:
    """A generation was accepted and queued (call after its transaction commits)."""
    if prometheus_client is not None:
        GENERATIONS.labels(model=model, status="accepted").inc()


def generation_started(*, model: str, queue_wait_seconds: float) -> None:
    """A worker claimed a queued generation after ``queue_wait_seconds`` in the queue."""
    if prometheus_client is not None:
        GENERATION_QUEUE_WAIT.labels(model=model).observe(max(queue_wait_seconds, 0.0))


def generation_finished(*, model: str, status: str, run_seconds: float | None) -> None:
    """A generation reached ``status`` (succeeded, failed, canceled); ``run_seconds`` None if it never ran."""
    if prometheus_client is None:
        return
    GENERATIONS.labels(model=model, status=status).inc()
    if run_seconds is not None:
        GENERATION_RUN.labels(model=model, status=status).observe(max(run_seconds, 0.0))


# --- Server-sent events --------------------------------------------------------------


def background_row_failed(*, job: str) -> None:
    if prometheus_client is not None:
        BACKGROUND_ROW_FAILURES.labels(job=job).inc()


def sse_stream_opened(*, stream: str) -> None:
    if prometheus_client is not None:
        SSE_STREAMS.labels(stream=stream).inc()
        SSE_OPEN.labels(stream=stream).inc()


def sse_stream_closed(*, stream: str) -> None:
    if prometheus_client is not None:
        SSE_OPEN.labels(stream=stream).dec()


@contextmanager
def sse_stream_open(*, stream: str) -> Iterator[None]:
    """Counts a stream as open for the duration of the ``with`` block."""
    sse_stream_opened(stream=stream)
    try:
        yield
    finally:
        sse_stream_closed(stream=stream)


async def sse_stream_tracked(iterator: AsyncIterator[Any], *, stream: str) -> AsyncIterator[Any]:
    """Yields from ``iterator``, counting the stream as open until it ends or the client leaves."""
    with sse_stream_open(stream=stream):
        async for item in iterator:
            yield item


# --- Celery ------------------------------------------------------------------------

PUBLISHED_AT_HEADER = "rivya_published_at"
_task_started: dict[str, float] = {}


def _on_before_task_publish(sender: str | None = None, headers: dict | None = None, **_: Any) -> None:
    # Wall clock, since publisher and worker are different processes (and maybe machines).
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


def _on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    _task_started[task_id] = time.monotonic()
    published = getattr(task.request, PUBLISHED_AT_HEADER, None)
    if published is None:
        published = (getattr(task.request, "headers", None) or {}).get(PUBLISHED_AT_HEADER)
    if published is not None and prometheus_client is not None:
        TASK_QUEUE_WAIT.labels(task=task.name).observe(max(time.time() - float(published), 0.0))


def _on_task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _task_started.pop(task_id, None) if task_id else None
    if task is None or prometheus_client is None:
        return
    state = state or "UNKNOWN"
    TASKS.labels(task=task.name, state=state).inc()
    if started is not None:
        TASK_RUN.labels(task=task.name, state=state).observe(time.monotonic() - started)


def _on_worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    path = multiprocess_dir()
    if path and prometheus_client is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), path)


def connect_celery_signals() -> None:
    """Record every Celery task's queue wait, run time and state (called once from ``AppConfig.ready``)."""
    from celery import signals

    signals.before_task_publish.connect(_on_before_task_publish, weak=False, dispatch_uid="rivya_metrics_publish")
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="rivya_metrics_prerun")
    signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="rivya_metrics_postrun")
    signals.worker_process_shutdown.connect(
        _on_worker_process_shutdown, weak=False, dispatch_uid="rivya_metrics_process_shutdown"
    )


# --- Exposition ----------------------------------------------------------------------


def metrics_registry() -> Any:
    """The registry to expose: every process's files in multiprocess mode, else this process's metrics."""
    path = multiprocess_dir()
    if path is None:
        return prometheus_client.REGISTRY
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def metrics_text() -> tuple[bytes, str]:
    """``(body, content type)`` of the Prometheus text exposition."""
    return prometheus_client.generate_latest(metrics_registry()), prometheus_client.CONTENT_TYPE_LATEST


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the exposition, for ``Authorization: Bearer <METRICS_TOKEN>`` only.

    Without a token configured the route does not exist (404), so a deployment
    that forgot the setting leaks nothing; see the module docstring.
    """
    token = api_settings.METRICS_TOKEN
    if not token or prometheus_client is None or request.method not in ("GET", "HEAD"):
        return HttpResponseNotFound("Not found\n", content_type="text/plain")
    if not _authorized(request, token):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_text()
    return HttpResponse(body, content_type=content_type)
