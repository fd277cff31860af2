"""A stand-in for an upstream HTTP service: a real server on 127.0.0.1, port 0, in a thread.

Each test tells it how to answer (``server.answer = fn``) and reads what it
received (``server.requests``). Handlers that stall wait on ``server.release``
so that stopping the server never waits for a sleeping request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering
    trickle: float = 0.0  # seconds between body bytes (a slow drip that never trips a read timeout)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **kwargs: Any) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json"}, **kwargs)


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer: Callable[[Received], Reply] = lambda request: Reply(404)
        self.requests: list[Received] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: StandInServer

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
        self.server.requests.append(received)
        reply = self.server.answer(received)
        if reply.delay and self.server.release.wait(reply.delay):
            return  # the test is over; drop the connection
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        try:
            if not reply.trickle:
                self.wfile.write(reply.body)
            for index in range(len(reply.body) if reply.trickle else 0):
                self.wfile.write(reply.body[index : index + 1])
                self.wfile.flush()
                if self.server.release.wait(reply.trickle):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to do

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


@contextmanager
def stand_in_server() -> Iterator[StandInServer]:
    server = StandInServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
