"""The hostile-input corpus, generated from the OpenAPI document (issue 21, item 8).

``cases(document, ids)`` yields, for every operation of the document and every
one of its path, query, header and body parameters, one ``Case`` per hostile
value of that parameter's kind, the rest of the request being valid (real ids
in the path, the operation's own example as the body). Plus, per operation with
a body, hostile whole bodies (10,000-deep JSON, invalid UTF-8, ``NaN``, …).

Every case must be answered with a status below 500; a case whose value no
field can accept (``must_refuse``: NUL, unpaired surrogates, nesting past the
limit, ``%00`` ids, wrong JSON types …) with a 4xx. Every 4xx must be in the
error envelope and quote at most a short prefix of what was sent. The same
cases run in-process in ``make test`` (a fixed-seed sample) and against a live
stack under ``make faults`` (all of them): ``check_response`` is the verdict.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

HUGE = 1_000_000  # characters in a huge string
ENVELOPE_KEYS = {"type", "code", "message", "param", "request_id"}
BODY_METHODS = {"post", "patch", "put"}


@dataclass(frozen=True)
class Case:
    operation: str  # "POST /api/v1/generations"
    target: str  # "body.input.prompt", "query.after", "path.task_id", "header.Prefer", "body"
    label: str  # what the hostile value is
    method: str
    path: str  # percent-encoded, with the query string
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    files: dict[str, Any] | None = None  # multipart: {name: (filename, bytes, type) or text}
    must_refuse: bool = True

    @property
    def name(self) -> str:
        return f"{self.operation} {self.target} {self.label}"


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


class RawJSON(str):
    """JSON text placed as is (numbers JSON can spell but Python cannot hold, e.g. 1e400)."""


# (label, value, must_refuse) for a JSON body field.
JSON_VALUES: list[tuple[str, Any, bool]] = [
    ("nul", "a\x00b", True),
    ("lone-surrogate", "a\ud800b", True),
    ("nul-key", {"k\x00": "v"}, True),
    ("deep-100", _deep(100), True),
    ("huge-string", "x" * HUGE, False),
    ("huge-int", 10**30, False),
    ("huge-negative", -(10**30), False),
    ("inf", RawJSON("1e400"), True),
    ("bool", True, False),
    ("array", [], False),
    ("object", {}, False),
    ("numeric-string", "5", False),
    ("fraction", 5.5, False),
    ("null", None, False),
]
# (label, percent-encoded value, must_refuse) for a query or path value.
URL_VALUES: list[tuple[str, str, bool]] = [
    ("nul", "%00", True),
    ("nul-inside", "x%00y", True),
    ("undecodable", "%ff%fe", True),
    ("encoded-surrogate", "%ED%A0%80", True),
    ("huge-string", "x" * 10_000, False),
    ("huge-number", "9" * 5000, False),
    ("negative", "-1", False),
    ("inf", "1e400", False),
    ("traversal", "..%2F..%2Fetc%2Fpasswd", False),
]
# Whole bodies: (label, bytes, content type).
WHOLE_BODIES: list[tuple[str, bytes, str]] = [
    ("deep-10000", b"[" * 10_000 + b"]" * 10_000, "application/json"),
    ("deep-10000-object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json"),
    ("invalid-utf8", b'{"x": "\xff\xfe"}', "application/json"),
    ("nan", b'{"x": NaN}', "application/json"),
    ("truncated", b'{"x": ', "application/json"),
    ("array", b"[]", "application/json"),
    ("not-json", b"hello", "application/json"),
    ("wrong-type", b"<xml/>", "text/xml"),
]
HEADER_VALUES: list[tuple[str, str, bool]] = [
    ("huge", "x" * 5000, False),
    ("non-ascii", "\u00e9t\u00e9", False),
    ("control", "a\tb", False),
]


def _dumps(value: Any) -> str:
    if isinstance(value, RawJSON):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)  # ensure_ascii: a lone surrogate goes out as the escape \ud800


def _with_ids(value: Any, ids: dict[str, str]) -> Any:
    """The example with its placeholder ids (``file_…``, ``chat_…``, ``we_…``) replaced by real ones."""
    prefixes = {"file_": ids.get("file_id"), "chat_": ids.get("session_id"), "we_": ids.get("endpoint_id")}
    if isinstance(value, dict):
        return {k: _with_ids(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_ids(v, ids) for v in value]
    if isinstance(value, str):
        for prefix, real in prefixes.items():
            if value.startswith(prefix) and real:
                return real
    return value


def _fields(body: Any, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """Paths to every field of the example body, down to two levels (``input.prompt``, ``messages[0].content``)."""
    if not isinstance(body, dict):
        return
    for key, value in body.items():
        yield (*prefix, key) if prefix else (key,)
        if isinstance(value, dict) and not prefix:
            for inner in value:
                yield (key, inner)
        if isinstance(value, list) and value and isinstance(value[0], dict) and not prefix:
            for inner in value[0]:
                yield (key, 0, inner)


def _replace(body: Any, path: tuple, value: Any) -> Any:
    body = json.loads(json.dumps(body))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


def _dotted(path: tuple) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")


def _operation_parts(path: str, op: dict, ids: dict[str, str]) -> tuple[dict, list, list]:
    params = op.get("parameters", [])
    path_values = {p["name"]: ids.get(p["name"], "x") for p in params if p["in"] == "path"}
    queries = [p["name"] for p in params if p["in"] == "query"]
    headers = [p["name"] for p in params if p["in"] == "header" and p["name"] != "Idempotency-Key"]
    return path_values, queries, headers


def _url(template: str, path_values: dict[str, str], query: str = "") -> str:
    url = template
    for name, value in path_values.items():
        url = url.replace("{" + name + "}", value)
    return url + (f"?{query}" if query else "")


def _example_body(op: dict, ids: dict[str, str]) -> tuple[str | None, Any]:
    content = op.get("requestBody", {}).get("content", {})
    for media_type in ("application/json", "multipart/form-data"):
        if media_type in content:
            examples = content[media_type].get("examples") or {}
            value = next(iter(examples.values()), {}).get("value", {}) if examples else {}
            return media_type, _with_ids(value, ids)
    return None, None


def cases(document: dict, ids: dict[str, str]) -> list[Case]:
    """Every hostile case of every operation under ``/api/v1`` (see the module docstring)."""
    found: list[Case] = []
    for template, item in document["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "patch", "delete", "put"):
                continue
            found += _operation_cases(template, method, op, ids, _body_properties(document, op))
    return found


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _body_properties(document: dict, op: dict) -> list[str]:
    """Every top-level property of the operation's JSON (or form) body schema."""
    content = op.get("requestBody", {}).get("content", {})
    for media_type in ("application/json", "multipart/form-data"):
        if media_type in content:
            return list(_resolve(document, content[media_type].get("schema", {})).get("properties", {}))
    return []


def _operation_cases(template: str, method: str, op: dict, ids: dict[str, str], properties: list[str]) -> list[Case]:
    operation = f"{method.upper()} {template}"
    path_values, queries, headers = _operation_parts(template, op, ids)
    media_type, example = _example_body(op, ids)
    base_body, base_type = None, None
    if media_type == "application/json":
        base_body, base_type = json.dumps(example).encode(), media_type
    elif method in BODY_METHODS:
        base_body, base_type = b"{}", "application/json"
    common = {"operation": operation, "method": method.upper()}
    files = _multipart(example) if media_type == "multipart/form-data" else None
    out: list[Case] = []
    for name in path_values:
        for label, value, refuse in URL_VALUES:
            url = _url(template, {**path_values, name: value})
            out.append(Case(**common, target=f"path.{name}", label=label, path=url, body=base_body,
                            content_type=base_type, files=files, must_refuse=refuse))  # fmt: skip
    for name in queries:
        for label, value, refuse in URL_VALUES:
            url = _url(template, path_values, f"{quote(name)}={value}")
            out.append(Case(**common, target=f"query.{name}", label=label, path=url, body=base_body,
                            content_type=base_type, files=files, must_refuse=refuse))  # fmt: skip
    for name in [*headers, "Idempotency-Key"] if method == "post" else headers:
        for label, value, refuse in HEADER_VALUES:
            out.append(Case(**common, target=f"header.{name}", label=label, path=_url(template, path_values),
                            headers={name: value}, body=base_body, content_type=base_type, files=files,
                            must_refuse=refuse))  # fmt: skip
    if media_type == "application/json":
        out += _json_body_cases(common, _url(template, path_values), example or {}, properties)
    elif files is not None:
        out += _multipart_cases(common, _url(template, path_values), files)
    if method in BODY_METHODS:
        for label, raw, content_type in WHOLE_BODIES:
            # An operation that takes no body ignores one that is well-formed (the gate still refuses bad JSON).
            ignored = media_type is None and label in ("array", "wrong-type")
            out.append(Case(**common, target="body", label=label, path=_url(template, path_values), body=raw,
                            content_type=content_type, must_refuse=not ignored))  # fmt: skip
    return out


def _json_body_cases(common: dict, url: str, example: Any, properties: list[str]) -> list[Case]:
    out = []
    paths = list(dict.fromkeys([*_fields(example), *((name,) for name in properties)]))
    for path in paths:
        for label, value, refuse in JSON_VALUES:
            body = _replace(example, path, value)
            out.append(Case(**common, target=f"body.{_dotted(path)}", label=label, path=url,
                            body=_dumps(body).encode(), content_type="application/json",
                            must_refuse=refuse))  # fmt: skip
    return out


def _multipart(example: Any) -> dict[str, Any]:
    fields = {k: v for k, v in (example or {}).items() if k != "file"}
    return {**fields, "file": ("ref.png", None, "image/png")}  # bytes filled in by the runner


def _multipart_cases(common: dict, url: str, files: dict[str, Any]) -> list[Case]:
    out = []
    for name in [n for n in files if n != "file"]:
        for label, value in (("nul", "a\x00b"), ("huge-string", "x" * HUGE), ("unknown-field", None)):
            fields = dict(files)
            if value is None:
                fields["bogus"] = "1"
            else:
                fields[name] = value
            out.append(Case(**common, target=f"form.{name}", label=label, path=url, files=fields))
    for label, filename in (("nul-filename", "a\x00.png"), ("huge-filename", "x" * 10_000 + ".png")):
        fields = {**files, "file": (filename, None, "image/png")}
        out.append(Case(**common, target="form.file", label=label, path=url, files=fields, must_refuse=False))
    return out


def sample(all_cases: list[Case], *, size: int, seed: int) -> list[Case]:
    """A fixed-seed sample of ``size`` cases that keeps at least one case of every operation and target."""
    rng = random.Random(seed)
    by_target: dict[tuple[str, str], list[int]] = {}
    for index, case in enumerate(all_cases):
        by_target.setdefault((case.operation, case.target), []).append(index)
    chosen = {rng.choice(group) for group in by_target.values()}
    rest = [index for index in range(len(all_cases)) if index not in chosen]
    chosen |= set(rng.sample(rest, max(0, min(len(rest), size - len(chosen)))))
    return [all_cases[index] for index in sorted(chosen)]


def check_response(case: Case, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with the answer to ``case`` (None when it is right)."""
    if status >= 500:
        return f"{status}: {body[:300]!r}"
    if case.must_refuse and not 400 <= status < 500:
        return f"accepted ({status}) a value that must be refused: {body[:200]!r}"
    if 400 <= status < 500:
        if not content_type.startswith("application/json"):
            return f"{status} is not JSON ({content_type}): {body[:200]!r}"
        try:
            error = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return f"{status} is not in the error envelope: {body[:200]!r}"
        if set(error) != ENVELOPE_KEYS:
            return f"{status} error keys {sorted(error)}"
        if re.search(r"x{201}|9{201}", body.decode("utf-8", "replace")):
            return f"{status} quotes more than 200 characters of the value back"
    return None
