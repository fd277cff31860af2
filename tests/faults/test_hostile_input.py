"""The hostile-input tier, full run (issue 21, item 8): every case of ``tests/hostile.py``, generated
from the live OpenAPI document, against a production-shaped stack (gunicorn + uvicorn workers, a
Celery worker, PostgreSQL, Redis, DEBUG off), as the issue's reporter attacked it. Then the ledger
must balance (``rivya_ledger_check``) and the web processes must all still be up.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests import hostile, media

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(900)]


def fixtures(client: httpx.Client) -> dict[str, str]:
    upload = client.post("/api/v1/files", files={"file": ("ref.png", media.png(), "image/png")},
                         data={"purpose": "reference"})  # fmt: skip
    assert upload.status_code == 201, upload.text
    task = client.post("/api/v1/generations", json={"model": "rivya-image-1", "input": {"prompt": "a kite"}})
    assert task.status_code == 202, task.text
    endpoint = client.post("/api/v1/webhooks", json={"url": "https://127.0.0.1:9/never", "event_types": ["*"]})
    assert endpoint.status_code == 201, endpoint.text
    event = client.post(f"/api/v1/webhooks/{endpoint.json()['id']}/test")
    chat = client.post("/api/v1/chat/completions", json={"model": "rivya-chat-1",
                       "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert chat.status_code == 200, chat.text
    return {
        "file_id": upload.json()["id"],
        "task_id": task.json()["id"],
        "endpoint_id": endpoint.json()["id"],
        "event_id": event.json()["id"],
        "session_id": chat.json()["session_id"],
        "model_id": "rivya-image-1",
    }


def send(client: httpx.Client, case: hostile.Case) -> httpx.Response:
    headers = {name: value.encode("utf-8") for name, value in case.headers.items()}
    if case.files is not None:
        files, data = {}, {}
        for name, value in case.files.items():
            if isinstance(value, tuple):
                files[name] = (value[0], value[1] or media.png(), value[2])
            else:
                data[name] = value
        return client.request(case.method, case.path, files=files, data=data, headers=headers)
    if case.content_type:
        headers["Content-Type"] = case.content_type.encode()
    with client.stream(case.method, case.path, content=case.body, headers=headers) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()  # a stream (SSE) is judged by its status
        return response


def test_every_hostile_case_against_a_live_stack(make_stack):
    stack = make_stack(
        roles=("web", "worker"),
        extra_env={"DEBUG": "false", "RIVYA_API_RATE_LIMIT": "off", "ALLOWED_HOSTS": "127.0.0.1,localhost"},
    )
    secret = stack.bootstrap("hostile", credits=1_000_000)
    with stack.client(secret, timeout=60) as client:
        document = client.get("/api/v1/openapi.json").json()
        every = hostile.cases(document, fixtures(client))
        started, problems = time.monotonic(), []
        for case in every:
            try:
                response = send(client, case)
            except httpx.HTTPError as exc:
                problems.append(f"{case.name}: no answer ({type(exc).__name__}: {exc})")
                continue
            body = b"" if response.headers.get("content-type", "").startswith("text/event-stream") else response.content
            problem = hostile.check_response(case, response.status_code, response.headers.get("content-type", ""), body)
            if problem:
                problems.append(f"{case.name}: {problem}")
    seconds = time.monotonic() - started
    print(f"hostile input (live stack): {len(every)} cases, {len({c.operation for c in every})} operations, "  # noqa: T201
          f"{seconds:.1f} s, {len(problems)} wrong")  # fmt: skip
    assert not problems, f"{len(problems)} of {len(every)} cases answered wrongly:\n" + "\n".join(problems[:40])
    assert all(process.alive() for process in stack.processes.values())
    check = stack.manage("rivya_ledger_check")
    assert check.returncode == 0, check.stdout + check.stderr
