"""What no code behind the gate should ever see, and how to say so.

The rules of the hostile-input gate (``rivya_api.common.gate``), as plain
functions that raise ``ApiError`` (a 4xx naming the parameter):

* ``json_loads``: a JSON body or field, decoded strictly (UTF-8, no ``NaN``),
  nested at most ``MAX_JSON_DEPTH`` (64) deep, with no NUL character, no
  unpaired surrogate, no number beyond what a 64-bit integer or a finite
  double can hold. Python's parser raises ``RecursionError`` at ~1,000 levels;
  everything behind it (fingerprint, serializers, JSON Schema, the database)
  recurses too, so the limit is enforced here, once.
* ``check_text``: one string (a form field, a query value, a dict key).
* ``quote``: how an error shows an offending value: at most ``QUOTE_LIMIT``
  (200) characters of it, escaped.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rivya_api.common.errors import ApiError
from rivya_api.conf import api_settings

QUOTE_LIMIT = 200
# Integers beyond a signed 64-bit column fit no database field and no upstream API.
INT_LIMIT = 2**63 - 1
# Only bodies that contain one of these need the walk over every value (the common case does not).
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|\d{19}|[eE][+]?\d{3}|[eE]-\d{3}")


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``value`` for an error message: repr-escaped, cut to ``limit`` characters with an ellipsis."""
    text = value if isinstance(value, str) else str(value)
    # repr() escapes NUL, controls and lone surrogates, so a message never carries them raw.
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit])[:-1] + "…'"


def label(text: str, limit: int = 64) -> str:
    """``text`` as a parameter name in an error: as is when short and printable, else escaped and cut."""
    if len(text) <= limit and text.isprintable():
        return text
    return quote(text, limit)[1:-1]


def _segment(key: str) -> str:
    """A dict key as one step of a parameter path (long keys cut, bad characters escaped)."""
    if _bad_text_reason(key) or len(key) > 64:
        return quote(key, 64)
    return key


def _bad_text_reason(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"an unpaired surrogate (\\u{ord(text[exc.start]):04x})"
    return None


def check_text(text: str, *, param: str | None, status: int = 400) -> None:
    """Refuse a string holding NUL or an unpaired UTF-16 surrogate (nothing downstream stores either)."""
    reason = _bad_text_reason(text)
    if reason:
        where = param or "The request"
        raise ApiError(
            f"{where} contains {reason}, which is not accepted.", code="invalid_string", param=param, status=status
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_loads(raw: bytes | str, *, param: str | None = None) -> Any:
    """Parse a JSON document under the gate's rules; ``param`` names it in errors (None: the body)."""
    what = param or "The body"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(f"{what} is not valid UTF-8 (byte {exc.start}).", code="invalid_json", param=param) from None
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        data, deep = None, True
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer of over 4,300 digits
        if isinstance(exc, json.JSONDecodeError):
            message = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
        else:
            message = str(exc)
        raise ApiError(f"{what} is not valid JSON: {message}.", code="invalid_json", param=param) from None
    else:
        deep = False
    limit = int(api_settings.MAX_JSON_DEPTH)
    if deep or raw.count("[") + raw.count("{") > limit or _SUSPECT.search(raw):
        _walk(data, limit=limit, prefix=param or "", deep=deep)
    return data


def _too_deep(limit: int, param: str | None) -> ApiError:
    return ApiError(
        f"The JSON nests deeper than {limit} levels; flatten the structure.", code="nesting_too_deep", param=param
    )


def _walk(data: Any, *, limit: int, prefix: str, deep: bool) -> None:
    """Check every key and value, without recursion (the data may be deeper than the stack)."""
    if deep:
        raise _too_deep(limit, prefix or None)
    stack: list[tuple[Any, str, int]] = [(data, prefix, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, param=path or None)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > INT_LIMIT:
                raise ApiError(
                    f"{path or 'A number'} is out of range (at most {INT_LIMIT} in absolute value).",
                    code="number_out_of_range",
                    param=path or None,
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ApiError(f"{path or 'A number'} is out of range.", code="number_out_of_range", param=path or None)
        elif depth >= limit:
            raise _too_deep(limit, path or None)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{_segment(key)}" if path else _segment(key)
                check_text(key, param=child)
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
