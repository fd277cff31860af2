"""Bad input at volume: schemathesis against the live OpenAPI document of a running stack.

Every operation gets at least 15 generated cases (deterministic, so a failure
reproduces), with a key of the test's own funded account, and the four checks
of the issue: no 5xx, no undocumented status, no undocumented Content-Type, no
body that contradicts its schema. Path parameters name real objects made before
the run (a file, a task, a webhook endpoint and its test event), so generated
requests reach the code behind the 404 rather than stopping at it.

The stack runs without a Celery worker: nothing the fuzzer creates is ever
executed or delivered, so a generated webhook URL can never be sent to.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import media
from tests.faults.harness import VENV_BIN

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(900)]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES = int(os.environ.get("RIVYA_SCHEMATHESIS_EXAMPLES", "15"))
REAL_ID_PROBABILITY = 0.7


def fixtures(client) -> dict[str, str]:
    """Real ids for the path parameters: one object of each kind the API addresses by id."""
    upload = client.post("/api/v1/files", files={"file": ("ref.png", media.png(), "image/png")},
                         data={"purpose": "reference"})  # fmt: skip
    assert upload.status_code == 201, upload.text
    task = client.post("/api/v1/generations", json={"model": "rivya-image-1", "input": {"prompt": "a kite"}})
    assert task.status_code == 202, task.text
    endpoints = []
    for _ in range(2):  # one for DELETE, one for everything else
        endpoint = client.post(
            "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/never-sent", "event_types": ["generation.succeeded"]}
        )
        assert endpoint.status_code == 201, endpoint.text
        endpoints.append(endpoint.json()["id"])
    event = client.post(f"/api/v1/webhooks/{endpoints[0]}/test")
    assert event.status_code == 202, event.text
    return {
        "file_id": upload.json()["id"],
        "task_id": task.json()["id"],
        "endpoint_id": endpoints[0],
        "deleted_endpoint_id": endpoints[1],
        "event_id": event.json()["id"],
        "model_id": "rivya-image-1",
    }


def config_file(folder: Path, secret: str, ids: dict[str, str]) -> Path:
    """Auth header, and each path parameter drawn from the real id most of the time (else generated)."""
    deleted = ids.pop("deleted_endpoint_id")
    lines = ["[headers]", f'Authorization = "Bearer {secret}"', ""]
    for name, value in [*ids.items(), ("deleted_endpoint_id", deleted)]:
        lines += [f"[dictionaries.{name}]", f'values = ["{value}"]', ""]
    lines += ["[parameters]"]
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = {REAL_ID_PROBABILITY} }}' for name in ids]
    # DELETE gets an endpoint of its own, so the other operations keep theirs for the whole run.
    lines += ["", "[[operations]]", 'include-name = "DELETE /api/v1/webhooks/{endpoint_id}"',
              f'parameters = {{ "path.endpoint_id" = {{ dictionary = "deleted_endpoint_id", '
              f"probability = {REAL_ID_PROBABILITY} }} }}"]  # fmt: skip
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def operation_counts(report_dir: Path) -> dict[str, collections.Counter]:
    """Responses per operation and status, from the run's NDJSON report."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished["recorder"]
            label = recorder["label"] if finished["phase"] != "stateful" else "(stateful sequences)"
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response")
                counts[label][response["status_code"] if response else "no response"] += 1
    return counts


def test_schemathesis_finds_nothing_the_document_does_not_declare(make_stack, tmp_path):
    stack = make_stack(roles=("web",))  # see the module docstring
    secret = stack.bootstrap("schemathesis", credits=1_000_000)
    with stack.client(secret) as client:
        parameters = fixtures(client)
    config = config_file(tmp_path, secret, parameters)
    command = [
        str(VENV_BIN / "schemathesis"), "--config-file", str(config), "run",
        f"{stack.base_url}/api/v1/openapi.json",
        "--checks", CHECKS,
        "--max-examples", str(EXAMPLES),
        "--generation-deterministic",
        "--request-timeout", "90",
        "--workers", "2",
        "--continue-on-failure",
        "--no-color",
        "--report", "junit,ndjson", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=840)
    summary = done.stdout[-20000:] + done.stderr[-3000:]
    print(summary)  # noqa: T201  (the run's own summary belongs in the test log)
    counts = operation_counts(tmp_path / "report")
    print("requests per operation (by status):")  # noqa: T201
    for label, statuses in sorted(counts.items()):
        print(f"  {sum(statuses.values()):5d}  {label}  {dict(sorted(statuses.items(), key=str))}")  # noqa: T201
    assert done.returncode == 0, summary
    assert "Tested: " in done.stdout
    assert stack.processes["web"].alive()
