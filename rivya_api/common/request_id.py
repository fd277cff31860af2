"""The request id: echoed from ``X-Request-Id`` when the client sends a sane one, else ``req_…``.

It lives in a context variable so log records and error bodies can carry it
without passing the request around.
"""

from __future__ import annotations

import contextvars
import re

from rivya_api.ids import public_id

_current: contextvars.ContextVar[str] = contextvars.ContextVar("rivya_request_id", default="")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from_header(value: str | None) -> str:
    if value and _CLIENT_ID.match(value):
        return value
    return public_id("req")


def current_request_id() -> str:
    return _current.get()


def set_current_request_id(value: str) -> contextvars.Token[str]:
    return _current.set(value)


def reset_current_request_id(token: contextvars.Token[str]) -> None:
    _current.reset(token)
