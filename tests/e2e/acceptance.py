"""The acceptance flows, over plain HTTP against a running stack: a key, a generation, a chat stream, a webhook.

Each flow first asks the stack what it serves: a generation needs a media model in
``GET /api/v1/models`` and the generations route, a chat stream a chat model and the
completions route, a webhook the endpoints route. A flow whose parts the build does
not have returns ``Skipped(reason)``, so the same code proves whatever has landed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

MEDIA_KINDS = ("image", "audio", "video")


@dataclass(frozen=True)
class Skipped:
    reason: str


def route_exists(client: httpx.Client, method: str, path: str) -> bool:
    """Whether the API routes ``path``: unknown paths answer 404 with code ``unknown_route``."""
    response = client.request(method, path, json={} if method != "GET" else None)
    if response.status_code != 404:
        return True
    try:
        return response.json()["error"]["code"] != "unknown_route"
    except (ValueError, KeyError, TypeError):
        return True


def listed_models(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/v1/models")
    response.raise_for_status()
    return response.json()["data"]


def minimal_input(schema: dict[str, Any]) -> dict[str, Any]:
    """The smallest valid input for a model's ``parameters`` schema: required fields only, cheapest values."""
    values: dict[str, Any] = {}
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        spec = properties.get(name, {})
        if "default" in spec:
            values[name] = spec["default"]
        elif "enum" in spec:
            values[name] = spec["enum"][0]
        elif spec.get("type") in ("integer", "number"):
            values[name] = spec.get("minimum", 1)
        elif spec.get("type") == "boolean":
            values[name] = False
        else:
            values[name] = "a small red circle on white"
    for name in ("width", "height"):  # the cheapest size where the model prices by size
        if name in properties and "minimum" in properties[name]:
            values[name] = properties[name]["minimum"]
    if "duration" in properties and "minimum" in properties["duration"]:
        values["duration"] = properties["duration"]["minimum"]
    return values


# --- a generation ------------------------------------------------------------------------


def generation_flow(client: httpx.Client, *, timeout: float = 90) -> dict[str, Any] | Skipped:
    media = [m for m in listed_models(client) if m.get("kind") in MEDIA_KINDS]
    if not media:
        return Skipped("the catalog lists no image, audio or video model")
    if not route_exists(client, "POST", "/api/v1/generations"):
        return Skipped("this build has no POST /api/v1/generations")
    model = next((m for m in media if m["kind"] == "image"), media[0])
    response = client.post(
        "/api/v1/generations",
        json={"model": model["id"], "input": minimal_input(model.get("parameters") or {})},
    )
    assert response.status_code == 202, response.text
    task = response.json()
    deadline = time.monotonic() + timeout
    while task["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline, f"generation still {task['status']} after {timeout}s"
        time.sleep(0.3)
        task = client.get(f"/api/v1/generations/{task['id']}").json()
    assert task["status"] == "succeeded", task
    assert task["outputs"], task
    download = httpx.get(task["outputs"][0]["url"], timeout=30)
    assert download.status_code == 200
    assert download.content
    return task


# --- a chat stream -----------------------------------------------------------------------


def chat_stream_flow(client: httpx.Client) -> dict[str, Any] | Skipped:
    chat = [m for m in listed_models(client) if m.get("kind") == "chat"]
    if not chat:
        return Skipped("the catalog lists no chat model")
    if not route_exists(client, "POST", "/api/v1/chat/completions"):
        return Skipped("this build has no POST /api/v1/chat/completions")
    body = {
        "model": chat[0]["id"],
        "stream": True,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    chunks: list[dict[str, Any]] = []
    done = False
    with client.stream("POST", "/api/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                done = True
                break
            chunks.append(json.loads(data))
    assert done, "the stream ended without [DONE]"
    text = "".join((c["choices"][0].get("delta") or {}).get("content") or "" for c in chunks if c.get("choices"))
    assert text, chunks
    return {"chunks": len(chunks), "text": text}


# --- a webhook ---------------------------------------------------------------------------


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the openssl CLI (production-mode webhooks need https)."""
    cert, key = folder / "receiver.crt", folder / "receiver.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Receiver:
    """An HTTPS webhook receiver on 127.0.0.1 with an OS-assigned port; keeps every request."""

    cert: Path
    key: Path
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Standard Webhooks: HMAC-SHA256 of ``id.timestamp.body`` with the base64 key after ``whsec_``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.partition(",")[2] for part in headers["webhook-signature"].split()]
    assert any(hmac.compare_digest(expected, sig) for sig in offered), "signature does not verify"


def webhook_flow(client: httpx.Client, receiver: Receiver, *, timeout: float = 60) -> dict[str, Any] | Skipped:
    if not route_exists(client, "GET", "/api/v1/webhooks"):
        return Skipped("this build has no /api/v1/webhooks")
    created = client.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    sent = client.post(f"/api/v1/webhooks/{endpoint['id']}/test")
    assert sent.status_code == 202, sent.text
    event_id = sent.json()["id"]
    deadline = time.monotonic() + timeout
    while not any(json.loads(r["body"]).get("id") == event_id for r in receiver.requests):
        assert time.monotonic() < deadline, f"no delivery of {event_id} within {timeout}s"
        time.sleep(0.2)
    request = next(r for r in receiver.requests if json.loads(r["body"]).get("id") == event_id)
    verify_standard_webhook(endpoint["secret"], request["headers"], request["body"])
    return {"event": event_id, "deliveries": len(receiver.requests)}
