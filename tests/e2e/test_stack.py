"""``make stack`` from the repository: migrates a fresh database, serves the acceptance flows, stops cleanly.

One test, because bringing the stack up is the expensive part (well under two
minutes on a 2-core machine). It runs ``bin/stack`` (the Makefile target's command)
on a database of its own, created by the stack itself, and the run's Redis.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import acceptance
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(240)]

METRICS_TOKEN = "stack-test-metrics-token"


def _stack_database_url() -> tuple[str, str]:
    """A URL for a database named after this run's test database, which the stack creates itself."""
    db = settings.DATABASES["default"]
    name = f"{db['NAME']}_stack"
    if not db["NAME"].startswith("test_"):
        name = f"test_{name}"
    credentials = db.get("USER") or ""
    if db.get("PASSWORD"):
        credentials += f":{db['PASSWORD']}"
    return f"postgres://{credentials}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}", name


def _drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    url = urlunsplit(urlsplit(_stack_database_url()[0])._replace(path="/postgres"))
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _metrics(client: httpx.Client) -> dict[str, dict]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    families: dict[str, dict] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            families.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return families


def test_stack_serves_the_acceptance_flows_and_stops_cleanly(tmp_path):
    database_url, database_name = _stack_database_url()
    _drop_database(database_name)  # a fresh database, as on a fresh clone
    cert, key = acceptance.self_signed_certificate(tmp_path)
    stack = Stack(
        state_dir=tmp_path / "stack",
        env={
            "DATABASE_URL": database_url,
            "REDIS_URL": os.environ["REDIS_URL"],
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "RIVYA_METRICS_TOKEN": METRICS_TOKEN,
            "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
            "SSL_CERT_FILE": str(cert),  # the workers trust the local receiver's certificate
            "DATABASE_POOL_MAX_SIZE": "4",
        },
    )
    started = time.monotonic()
    try:
        stack.start()
        startup_seconds = time.monotonic() - started

        # A key, the way an operator gets one (credits where the ledger exists).
        done = stack.manage("rivya_bootstrap", "--username", "stack-smoke", "--credits", "1000", check=False)
        if done.returncode != 0:
            assert "--credits" in done.stderr, done.stderr
            done = stack.manage("rivya_bootstrap", "--username", "stack-smoke")
        secret = done.stdout.strip().splitlines()[-1]
        assert secret.startswith("rvya_sk_")

        with stack.client(secret) as client:
            assert client.get("/api/v1/models").status_code == 200
            results = {
                "generation": acceptance.generation_flow(client),
                "chat stream": acceptance.chat_stream_flow(client),
            }
            with acceptance.Receiver(cert, key) as receiver:
                results["webhook"] = acceptance.webhook_flow(client, receiver)
            served = {name for name, result in results.items() if not isinstance(result, acceptance.Skipped)}
            summary = json.dumps({k: str(v)[:120] for k, v in results.items()})
            print(f"stack up in {startup_seconds:.1f}s; flows: {summary}")  # noqa: T201  (shown with -s)

            # A task through the stack's broker, so the worker's own metrics must show up below.
            from config.celery import app

            app.send_task("rivya_api.files.tasks.file_expire_due")
            deadline = time.monotonic() + 30
            while True:
                families = _metrics(client)
                tasks = families.get("rivya_celery_tasks_total", {})
                if any(dict(labels).get("task") == "rivya_api.files.tasks.file_expire_due" for labels in tasks):
                    break
                assert time.monotonic() < deadline, "the worker's task metrics never reached /metrics"
                time.sleep(0.5)
            requests = families["rivya_http_requests_total"]
            assert requests[(("method", "GET"), ("route", "/api/v1/models"), ("status", "200"))] >= 1
            assert families["rivya_celery_task_queue_wait_seconds_count"]
            assert client.get("/metrics").status_code == 401
            if "generation" in served:
                assert any(dict(k).get("status") == "succeeded" for k in families["rivya_generations_total"])
    finally:
        returncode = stack.stop()
        _drop_database(database_name)

    # Stopped cleanly: honcho exited after SIGTERM and nothing of the group is left.
    assert returncode is not None
    assert not stack.leftover_processes()
    output = stack.output()
    assert "Traceback" not in output, output[-4000:]
    # JSON access lines with the account and key prefix, and never the secret anywhere.
    assert secret not in output
    access = [
        json.loads(line.split("| ", 1)[1])
        for line in output.splitlines()
        if '"rivya.access"' in line and "/api/v1/models" in line
    ]
    assert access
    assert all(line["api_key_prefix"] == secret[:12] and line["account"] for line in access)
