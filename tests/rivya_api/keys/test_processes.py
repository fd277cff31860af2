"""Revocation reaches every process at once: two real processes share PostgreSQL and Redis."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.keys.services import api_key_revoke
from tests.rivya_api.keys.subprocesses import ROOT, django_env

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.urls("tests.rivya_api.keys.urls"),
    pytest.mark.django_db(transaction=True),
]

URL = "/api/v1/_test/whoami"


class Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.rivya_api.keys.auth_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=django_env(),
            cwd=ROOT,
        )
        assert json.loads(self.process.stdout.readline()) == {"ready": True}

    def call(self, **command: str) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the worker process died"
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.close()


def test_revoke_in_this_process_stops_the_key_in_another_at_once(worker, api_key):
    key, secret = api_key
    assert worker.call(op="get", secret=secret)["status"] == 200
    warm = worker.call(op="get", secret=secret)
    # The other process now serves the key from the shared cache, without the database.
    assert warm == {"status": 200, "code": None, "queries": 0}
    api_key_revoke(api_key=key)
    assert worker.call(op="get", secret=secret) == {"status": 401, "code": "api_key_revoked", "queries": 1}


def test_revoke_in_another_process_stops_the_key_here_at_once(worker, client, api_key):
    key, secret = api_key
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert client.get(URL, **auth).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL, **auth).status_code == 200
    assert len(queries) == 0
    assert worker.call(op="revoke", public_id=key.public_id) == {"revoked": key.public_id}
    response = client.get(URL, **auth)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"
    assert key.events.get(action="revoked").source == "worker"


def test_deactivating_the_account_here_stops_its_key_in_another_process_at_once(worker, api_key):
    key, secret = api_key
    worker.call(op="get", secret=secret)
    assert worker.call(op="get", secret=secret)["queries"] == 0  # served from the shared cache
    from tests.rivya_api.keys.test_disabled_accounts import set_active

    set_active(key.account, False)
    assert worker.call(op="get", secret=secret)["code"] == "account_disabled"
