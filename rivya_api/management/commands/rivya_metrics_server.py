"""Serve this machine's Prometheus metrics on an internal address, without a token.

For machines that run only Celery workers (no web process to serve ``/metrics``),
or for deployments that keep metrics off the public listener altogether::

    PROMETHEUS_MULTIPROC_DIR=/run/rivya-metrics manage.py rivya_metrics_server --bind 10.0.0.5:9100

It exposes the same multiprocess directory the machine's other processes write to,
so bind it to an address only the monitoring network reaches.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rivya_api import metrics


class Command(BaseCommand):
    help = "Serve Prometheus metrics of this machine's processes on HOST:PORT (an internal address)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default="127.0.0.1:9100", help="HOST:PORT to listen on (default 127.0.0.1:9100)")

    def handle(self, *args: Any, bind: str, **options: Any) -> None:
        if metrics.prometheus_client is None:
            raise CommandError("prometheus_client is not installed.")
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError("--bind takes HOST:PORT, e.g. 10.0.0.5:9100.")
        server, thread = metrics.prometheus_client.start_http_server(
            int(port), addr=host.strip("[]"), registry=metrics.metrics_registry()
        )
        mode = f"processes writing to {metrics.multiprocess_dir()}" if metrics.multiprocess_dir() else "this process"
        self.stderr.write(f"Serving metrics of {mode} on http://{bind}/metrics")
        try:
            while thread.is_alive():
                time.sleep(1)
        except KeyboardInterrupt:
            server.shutdown()
