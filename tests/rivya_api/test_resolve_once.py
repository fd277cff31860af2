"""The URL resolved once per request (``rivya_api.common.resolve_once``) against resolving it at every asker.

Requests of every kind (the API, authenticated or not, a missing route, a refusal at the gate, a
page, a redirect to the slash form, a path under a mount prefix) go through the project's ASGI
stack (``BodyLimitMiddleware`` + ``config.middleware.ASGIHandler``) with ``RESOLVE_ONCE`` on and
off, interleaved: the same status, headers and body every time; on, a routed path is resolved once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
from django.urls import Resolver404, resolve, resolvers

from config.middleware import ASGIHandler
from rivya_api.common import resolve_once
from rivya_api.common.asgi import BodyLimitMiddleware

pytestmark = pytest.mark.django_db(transaction=True)  # the view runs in a request thread of its own

PER_REQUEST = re.compile(rb"req_[A-Za-z0-9]+|\d{4}-\d\d-\d\dT[0-9:.]+Z")  # request ids, "since" of /credits


def call(
    path: str, *, secret: str = "", method: str = "GET", body: bytes = b"", root: str = "", extra: tuple = ()
) -> tuple:
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"), *extra]
    headers.append((b"content-length", str(len(body)).encode()))
    if secret:
        headers.append((b"authorization", f"Bearer {secret}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": root + path, "raw_path": (root + path).encode(), "root_path": root, "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}  # fmt: skip
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    asyncio.run(BodyLimitMiddleware(ASGIHandler())(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    per_request = (b"x-request-id", b"x-ratelimit-reset-requests", b"x-ratelimit-remaining-requests")
    headers_kept = sorted((k, v) for k, v in start["headers"] if k.lower() not in per_request)
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers_kept, PER_REQUEST.sub(b"-", content)


@pytest.fixture
def root_resolves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the root resolver was asked to resolve."""
    paths: list[str] = []
    original = resolvers.URLResolver.resolve

    def counted(self: Any, path: str) -> Any:
        if path.startswith("/"):  # the root resolver's paths start with a slash; included ones' do not
            paths.append(path)
        return original(self, path)

    monkeypatch.setattr(resolvers.URLResolver, "resolve", counted)
    return paths


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: getattr(record, k, None) for k in ("route", "status", "method", "path", "account", "api_key")}
        message = re.sub(r"[0-9.]+ms", "ms", record.getMessage())  # the access line's duration
        self.lines.append((record.name, record.levelname, message, sorted(fields.items())))


@pytest.fixture
def log_lines():
    """What the access log and Django's request logger write, but for durations and request ids."""
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in ("rivya.access", "django.request")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.lines
    for logger in loggers:
        logger.removeHandler(handler)


def cases(secret: str) -> list[dict[str, Any]]:
    return [
        {"path": "/api/v1/credits", "secret": secret},
        {"path": "/api/v1/credits"},
        {"path": "/api/v1/credits", "secret": "rvya_sk_nonsense"},
        {"path": "/api/v1/credits/ledger", "secret": secret},
        {"path": "/api/v1/files/file_doesnotexist", "secret": secret},
        {"path": "/api/v1/no-such-route", "secret": secret},
        {"path": "/api/v1/models", "secret": secret, "method": "DELETE"},
        {"path": "/api/v1/chat/completions", "secret": secret, "method": "POST", "body": b'{"messages": [1'},
        {"path": "/api/v1/chat/completions", "secret": secret, "method": "POST", "body": b'{"model": "\\u0000"}'},
        {"path": "/healthz"},
        {"path": "/api/v1/openapi.json"},
        {"path": "/nowhere"},
        {"path": "/api/v1/credits", "secret": secret, "root": "/mounted"},
        {"path": "/api/v1/models", "secret": secret, "method": "HEAD"},
        {"path": "/docs"},  # APPEND_SLASH: a redirect to the slash form
        {"path": "/studio"},
        {"path": "/settings/"},  # a page (its login redirect)
        {"path": "/api/v1/credits/", "secret": secret},
    ]


def test_every_request_answers_and_logs_the_same_with_the_url_resolved_once(
    make_api_key, account, rivya_settings, log_lines
):
    _, secret = make_api_key(account)
    for case in cases(secret):
        answers = []
        for on in (True, False, True, False):
            rivya_settings("RIVYA_API", RESOLVE_ONCE=on)
            log_lines.clear()
            answers.append((call(**case), list(log_lines)))
        assert answers[0][1], case  # at least the access line
        assert all(answer == answers[0] for answer in answers), case


@pytest.mark.parametrize(
    ("path", "secret_needed"),
    [("/api/v1/credits", True), ("/api/v1/chat/completions", False), ("/healthz", False)],
)
def test_a_routed_path_is_resolved_once(root_resolves, make_api_key, account, rivya_settings, path, secret_needed):
    _, secret = make_api_key(account)
    call(path, secret=secret if secret_needed else "")
    assert root_resolves == [path]
    root_resolves.clear()
    rivya_settings("RIVYA_API", RESOLVE_ONCE=False)
    call(path, secret=secret if secret_needed else "")
    assert root_resolves == [path] * 3  # the body limit, the gate, Django's handler


def test_a_path_that_matches_nothing_is_resolved_at_every_asker_as_before(root_resolves):
    status, _, _ = call("/nowhere")
    assert status == 404
    assert root_resolves.count("/nowhere") >= 3


class _Request:
    def __init__(self, path: str) -> None:
        self.path_info = path


@pytest.mark.parametrize("path", ["/api/v1/credits", "/api/v1/files/file_abc", "/healthz", "/api/v1/openapi.json"])
def test_the_remembered_match_is_what_django_resolves(path):
    request = _Request(path)
    remembered = resolve_once.resolve_request_path(request)
    plain = resolve(path)
    assert (remembered.func, remembered.args, remembered.kwargs, remembered.route, remembered.namespaces) == (
        plain.func,
        plain.args,
        plain.kwargs,
        plain.route,
        plain.namespaces,
    )
    assert resolve_once.remembered_match(request) is remembered


def test_the_handler_resolves_again_when_the_path_or_urlconf_changed(rivya_settings):
    request = _Request("/api/v1/credits")
    resolve_once.resolve_request_path(request)
    request.path_info = "/healthz"
    assert resolve_once.remembered_match(request) is None
    request.path_info = "/api/v1/credits"
    request.urlconf = "config.urls"  # a middleware chose the urlconf: Django's own resolution
    assert resolve_once.remembered_match(request) is None
    del request.urlconf
    assert resolve_once.remembered_match(request) is not None
    rivya_settings("RIVYA_API", RESOLVE_ONCE=False)
    assert resolve_once.remembered_match(request) is None


def test_a_miss_is_not_remembered():
    request = _Request("/nowhere")
    with pytest.raises(Resolver404):
        resolve_once.resolve_request_path(request)
    assert resolve_once.remembered_match(request) is None
    assert json.dumps(sorted(k for k in request.__dict__ if k.startswith("rivya"))) == "[]"
