"""The hostile-input tier of ``make test`` (issue 21, item 8): cases generated from the live OpenAPI
document (``tests/hostile.py``), run in-process through every middleware, then the ledger must balance.

A fixed-seed sample keeps it within its time budget: ``RIVYA_HOSTILE_CASES`` cases (default 600;
``all`` runs every case). ``make faults`` runs every case against a live stack
(``tests/faults/test_hostile_input.py``). On PostgreSQL in CI, where NUL is what the database
itself refuses.
"""

from __future__ import annotations

import io
import os
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from rivya_billing.services import credits_grant
from tests import hostile, media
from tests.rivya_webhooks.support import PUBLIC_IP, StaticResolver

pytestmark = [
    # Committed data: streamed chat turns and background work use connections of their own.
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings(
        {
            "RIVYA_API": {"RATE_LIMIT": "off"},
            "RIVYA_WEBHOOKS": {"RESOLVER": StaticResolver({"hooks.example.com": [PUBLIC_IP]})},
        }
    ),
    pytest.mark.timeout(900),
]

SEED = 21


def _ids(client: Client, auth: dict[str, str]) -> dict[str, str]:
    """Real objects for every path parameter, so cases reach the code behind the lookup."""
    upload = client.post("/api/v1/files", {"purpose": "reference", "file": _png()}, **auth)
    assert upload.status_code == 201, upload.content
    task = client.post("/api/v1/generations", {"model": "rivya-image-1", "input": {"prompt": "a kite"}},
                       content_type="application/json", **auth)  # fmt: skip
    assert task.status_code == 202, task.content
    endpoint = client.post("/api/v1/webhooks", {"url": "https://hooks.example.com/x", "event_types": ["*"]},
                           content_type="application/json", **auth)  # fmt: skip
    assert endpoint.status_code == 201, endpoint.content
    event = client.post(f"/api/v1/webhooks/{endpoint.json()['id']}/test", **auth)
    chat = client.post("/api/v1/chat/completions", {"model": "rivya-chat-1", "messages": [{"role": "user",
                       "content": "hi"}]}, content_type="application/json", **auth)  # fmt: skip
    assert chat.status_code == 200, chat.content
    return {
        "file_id": upload.json()["id"],
        "task_id": task.json()["id"],
        "endpoint_id": endpoint.json()["id"],
        "event_id": event.json()["id"],
        "session_id": chat.json()["session_id"],
        "model_id": "rivya-image-1",
    }


def _png() -> SimpleUploadedFile:
    return SimpleUploadedFile("ref.png", media.png(), content_type="image/png")


def send(client: Client, case: hostile.Case, auth: dict[str, str]):
    headers = {**auth, **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in case.headers.items()}}
    if case.files is not None:
        data = {}
        for name, value in case.files.items():
            if isinstance(value, tuple):
                data[name] = SimpleUploadedFile(value[0], value[1] or media.png(), content_type=value[2])
            else:
                data[name] = value
        return client.post(case.path, data, **headers)
    return client.generic(case.method, case.path, case.body or b"", content_type=case.content_type or "", **headers)


def test_no_hostile_value_gets_a_5xx_and_the_ledger_still_balances(account, api_key):
    _, secret = api_key
    credits_grant(account=account, amount=1_000_000, reference="hostile-grant")
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    document = client.get("/api/v1/openapi.json").json()
    every = hostile.cases(document, _ids(client, auth))
    wanted = os.environ.get("RIVYA_HOSTILE_CASES", "600")
    chosen = every if wanted == "all" else hostile.sample(every, size=int(wanted), seed=SEED)
    started = time.monotonic()
    problems = []
    for case in chosen:
        response = send(client, case, auth)
        body = response.content if not response.streaming else b""  # a stream (SSE) is judged by its status
        response.close()
        problem = hostile.check_response(case, response.status_code, response.get("Content-Type", ""), body)
        if problem:
            problems.append(f"{case.name}: {problem}")
    seconds = time.monotonic() - started
    operations = len({case.operation for case in chosen})
    print(f"hostile input: {len(chosen)} of {len(every)} cases over {operations} operations in {seconds:.1f} s")  # noqa: T201
    assert not problems, f"{len(problems)} of {len(chosen)} cases answered wrongly:\n" + "\n".join(problems[:40])
    out = io.StringIO()
    call_command("rivya_ledger_check", stdout=out)  # raises CommandError on any drift
