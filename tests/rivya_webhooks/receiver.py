"""A real HTTP receiver on 127.0.0.1 (port 0) for delivery tests and the benchmark.

It records every request (headers, raw body, arrival time) and answers what its
``behaviour`` callable says, so a test can make it fail, redirect, throttle or
stall while deliveries are in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float
    content_length: int


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


Behaviour = Callable[[Received], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        received = Received(
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            path=self.path,
            at=time.time(),
            content_length=length,
        )
        with self.server.lock:
            self.server.requests.append(received)
        reply = self.server.behaviour(received)
        if reply.delay:
            time.sleep(reply.delay)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (timeout): that is the point of a slow reply

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[Received]
    behaviour: Behaviour
    lock: threading.Lock


class Receiver:
    """``with Receiver() as r: r.url("/hook") ... r.requests``."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.server.lock = threading.Lock()
        self.server.behaviour = behaviour or (lambda request: Reply())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def behaviour(self) -> Behaviour:
        return self.server.behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        self.server.behaviour = value

    def reply(self, **kwargs: Any) -> None:
        """Answer every following request with ``Reply(**kwargs)``."""
        reply = Reply(**kwargs)
        self.server.behaviour = lambda request: reply

    @property
    def requests(self) -> list[Received]:
        with self.server.lock:
            return list(self.server.requests)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.requests
            time.sleep(0.05)
        return self.requests
