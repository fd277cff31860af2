"""Real servers on real sockets for the chat tests: uvicorn in a thread, and a stand-in upstream.

``ServerThread`` serves any ASGI app on 127.0.0.1 with an OS-assigned port and
stops it when the test is done. ``StandInUpstream`` is an OpenAI-compatible
``/v1/chat/completions`` that streams a scripted reply (a delay before the
first chunk, a gate the test opens to let the first chunk go, a delay between
chunks, a failure after N chunks, an HTTP error status) and records when it
sent each chunk, so tests can compare that with when the client received it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn


class ServerThread:
    """``with ServerThread(app) as server: server.url``."""

    def __init__(self, app: Any, **options: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", loop="asyncio", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class UpstreamScript:
    """What the stand-in upstream does with the next request."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " upstream", "."])
    first_delay: float = 0.0
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: dict[str, int] | None = field(default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 4})
    fail_after: int | None = None  # send an error event after this many chunks
    drop_after: int | None = None  # close the connection after this many chunks, without [DONE]
    end_delay: float = 0.0  # seconds between [DONE] and the end of the response body
    status: int = 200
    # Set by a test to hold the first chunk (after the 200 and its headers) until the test sets it.
    first_gate: threading.Event | None = None


# The longest a held first chunk waits for its test (a test that failed before opening the gate).
GATE_LIMIT_SECONDS = 30


class StandInUpstream:
    """An OpenAI-compatible chat upstream (ASGI app), scripted per test."""

    def __init__(self) -> None:
        self.script = UpstreamScript()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.clients: list[tuple[str, int]] = []  # each request's client address: a reused connection repeats
        self.sent_at: list[float] = []  # monotonic time each content chunk was written
        self.finished_at: float | None = None
        self.disconnected = threading.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append(json.loads(body or b"{}"))
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        self.clients.append(tuple(scope["client"]))
        script = self.script
        if script.status != 200:
            error = {"error": {"message": "upstream-vendor-x says no", "type": "server_error"}}
            await send(
                {
                    "type": "http.response.start",
                    "status": script.status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": json.dumps(error).encode()})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

        async def event(data: Any) -> None:
            text = data if isinstance(data, str) else json.dumps(data)
            await send({"type": "http.response.body", "body": f"data: {text}\n\n".encode(), "more_body": True})

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {
                "id": "chatcmpl-upstream",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "vendor-x-large",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            if script.first_delay:
                await asyncio.sleep(script.first_delay)
            if script.first_gate is not None:
                deadline = time.monotonic() + GATE_LIMIT_SECONDS
                while not script.first_gate.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
            await event(chunk({"role": "assistant", "content": ""}))
            for index, text in enumerate(script.chunks):
                if script.fail_after is not None and index == script.fail_after:
                    await event({"error": {"message": "vendor-x overloaded", "type": "server_error"}})
                    await send({"type": "http.response.body", "body": b""})
                    return
                if script.drop_after is not None and index == script.drop_after:
                    await send({"type": "http.response.body", "body": b""})
                    return
                if index and script.delay:
                    await asyncio.sleep(script.delay)
                if self.disconnected.is_set():
                    return
                await event(chunk({"content": text}))
                self.sent_at.append(time.monotonic())
            await event(chunk({}, script.finish_reason))
            if script.usage is not None:
                usage = {**script.usage, "total_tokens": sum(script.usage.values())}
                await event({**chunk({}), "choices": [], "usage": usage})
            await event("[DONE]")
            if script.end_delay:
                await asyncio.sleep(script.end_delay)
            await send({"type": "http.response.body", "body": b""})
            self.finished_at = time.monotonic()
        finally:
            watcher.cancel()
