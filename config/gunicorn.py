"""Gunicorn settings of the web process: ``gunicorn config.asgi:application -c python:config.gunicorn``.

Gunicorn is only the process manager here; each worker is a uvicorn event loop
serving the ASGI application, so streaming views stay async. Everything comes
from the environment:

* ``PORT`` / ``BIND``: where to listen (``BIND`` wins; default ``127.0.0.1:$PORT``,
  ``PORT`` defaulting to 8000). Production binds the address its load balancer reaches.
* ``WEB_CONCURRENCY``: worker processes (default: 2 per CPU, at least 2). Each
  holds up to ``DATABASE_POOL_MAX_SIZE`` PostgreSQL connections (docs/operations.md, "Connection budget").
* ``GUNICORN_TIMEOUT``: seconds a worker may be silent before it is replaced
  (default 60; the event loop answers the heartbeat even while streams are open).
* ``FORWARDED_ALLOW_IPS``: proxies trusted for ``X-Forwarded-*`` (comma-separated addresses or
  networks; default none, so a client cannot claim HTTPS or another address by sending them).

With ``DEBUG=false`` gunicorn's and uvicorn's own lines are JSON too, like Django's.
"""

from __future__ import annotations

import os

from uvicorn_worker import UvicornWorker

_cpus = os.cpu_count() or 1

bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, 2 * _cpus))
worker_class = "config.gunicorn.RivyaUvicornWorker"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")
# Django writes one rivya.access line per request (with its request id); gunicorn's would duplicate it.
accesslog = None
errorlog = "-"
# Workers import the app themselves: nothing (database pools, Redis clients,
# prometheus_client values) is created in the arbiter and shared across fork.
preload_app = False
# Gunicorn's control socket is one path per user; several stacks on a machine would fight over it.
control_socket_disable = True

if os.environ.get("DEBUG", "true").strip().lower() not in ("1", "true", "yes", "y", "on", "ok"):
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


class RivyaUvicornWorker(UvicornWorker):
    # Django's ASGI handler has no lifespan protocol; "off" skips uvicorn's probe and its log line.
    CONFIG_KWARGS = {"loop": "auto", "http": "auto", "lifespan": "off"}


def child_exit(server, worker) -> None:  # noqa: ANN001  (gunicorn's hook signature)
    """Drop a dead worker's live gauges (open SSE streams) from the shared metrics directory."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)
