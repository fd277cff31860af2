"""Webhook deliveries can be routed to a queue of their own; by default they share Celery's queue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config.celery import app

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import django; django.setup(); from config.celery import app; "
    "route = lambda name: app.amqp.router.route({}, name)['queue'].name; "
    "print(route('rivya_webhooks.deliver'), route('rivya_webhooks.sweep'), route('rivya_api.generation_run'))"
)


def test_deliveries_share_the_default_queue_unless_routed():
    assert app.amqp.router.route({}, "rivya_webhooks.deliver")["queue"].name == "celery"


def test_celery_webhooks_queue_takes_only_the_deliveries():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "CELERY_WEBHOOKS_QUEUE": "webhooks"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["webhooks", "celery", "celery"]
