"""OpenAPI: the ``Idempotency-Key`` header and its 400/409/422 on every idempotent POST.

``postprocess_idempotency`` is a drf-spectacular postprocessing hook
(``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``). For every POST operation
served by a view with ``idempotency_enabled`` (every ``AccountScopedMixin``
view unless it opted out) it adds the header parameter, the error responses
(merged into ones the view already documents, as extra examples), ``Retry-After``
on the 409 and ``Idempotent-Replayed`` on the success responses. It runs
after ``rivya_api.common.schema.postprocess_schema`` and reuses its pieces:
errors point at the shared ``Error`` component (an equivalent one is added only
when no operation produced it, as in test URLconfs) and every response it adds
documents ``X-Request-Id`` like the others.
"""

from __future__ import annotations

from typing import Any

from rivya_api.common.errors import TYPE_BY_STATUS
from rivya_api.common.schema import ERROR_REF, REQUEST_ID_EXAMPLE, REQUEST_ID_HEADER, RETRY_AFTER_HEADER
from rivya_api.idempotency.http import HEADER, MAX_KEY_LENGTH, REPLAYED_HEADER

PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": (
        "Makes a retried POST safe: the first request with a key runs, and a retry with the same key and the "
        "same request (method, path and body; JSON compared by meaning, multipart by fields and file hashes) "
        "gets the first response again, success or error, with `Idempotent-Replayed: true`. Scoped to the "
        "account (it survives rolling the API key) and kept for 24 hours. A retry while the first is still "
        "running gets 409 `idempotency_key_in_flight` with `Retry-After`; the same key with a different request "
        "gets 422 `idempotency_key_reused`. Requests rejected before execution (authentication, validation, rate "
        "limit) store nothing. Use a fresh UUID v4 per logical request."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]+$"},
    "example": "8e03978e-40d5-43e8-bc93-6894a57f9324",
}

# status -> (code, example message, description of a response the hook creates, sentence added
# to the description of a response the view or the standard-errors hook already documents)
ERRORS: dict[int, tuple[str, str, str, str]] = {
    400: (
        "idempotency_key_invalid",
        f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID v4 is recommended).",
        f"Invalid request: a malformed `{HEADER}` (`idempotency_key_invalid`).",
        f"A malformed `{HEADER}` is `idempotency_key_invalid`.",
    ),
    409: (
        "idempotency_key_in_flight",
        f"A request with this {HEADER} is still being processed; retry after the Retry-After delay.",
        f"A request with the same `{HEADER}` is still running (`idempotency_key_in_flight`); "
        "retry after `Retry-After` seconds.",
        f"A request with the same `{HEADER}` still running is `idempotency_key_in_flight`; "
        "retry after `Retry-After` seconds.",
    ),
    422: (
        "idempotency_key_reused",
        f"This {HEADER} was already used with a different request (method, path or body); "
        "use a new key for a new request.",
        f"The `{HEADER}` was already used with a different request (`idempotency_key_reused`); "
        "do not retry with this key.",
        f"An `{HEADER}` already used with a different request is `idempotency_key_reused`.",
    ),
}

REPLAYED_HEADER_SPEC = {
    "description": f"`true` when this is the stored response of an earlier request with the same `{HEADER}`.",
    "schema": {"type": "string", "enum": ["true"]},
}

# Used only when no operation produced the shared component (see module docstring).
FALLBACK_ERROR_COMPONENT = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "request_id": {"type": ["string", "null"]},
            },
            "required": ["type", "code", "message", "param", "request_id"],
        }
    },
    "required": ["error"],
}


def _example(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    """In the form of ``rivya_api.common.schema.error_responses``' examples (CamelCase name, code as summary)."""
    value = {"type": TYPE_BY_STATUS[status], "code": code, "message": message, "param": param}
    return {"value": {"error": {**value, "request_id": REQUEST_ID_EXAMPLE}}, "summary": code}


def _example_name(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_"))


def _idempotent_operations(generator: Any) -> set[tuple[str, str]] | None:
    """(path, method) of the POSTs whose view has idempotency on; None if the generator hides them."""
    endpoints = getattr(generator, "endpoints", None)
    if endpoints is None:
        return None
    found = set()
    for endpoint in endpoints:
        path, method, callback = endpoint[0], endpoint[-2], endpoint[-1]
        if method.upper() != "POST":
            continue
        flag = getattr(getattr(callback, "cls", None), "idempotency_enabled", False)
        # A property (decided per request, e.g. chat turns) counts as enabled.
        if flag if isinstance(flag, bool) else flag is not None:
            found.add((path, "post"))
    return found


def _add_error(operation: dict[str, Any], status: int) -> None:
    code, message, description, addendum = ERRORS[status]
    responses = operation["responses"]
    response = responses.get(str(status))
    if response is None:
        response = responses[str(status)] = {"description": description, "headers": {"X-Request-Id": REQUEST_ID_HEADER}}
    elif code not in response.get("description", ""):
        response["description"] = f"{response.get('description', '').rstrip()} {addendum}".strip()
    content = response.setdefault("content", {}).setdefault("application/json", {})
    content.setdefault("schema", ERROR_REF)
    param = HEADER if status in (400, 422) else None
    content.setdefault("examples", {})[_example_name(code)] = _example(status, code, message, param)
    if status == 409:
        response.setdefault("headers", {}).setdefault("Retry-After", RETRY_AFTER_HEADER)


def postprocess_idempotency(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular hook: document ``Idempotency-Key`` on every idempotent POST."""
    idempotent = _idempotent_operations(generator)
    touched = False
    for path, path_item in (result.get("paths") or {}).items():
        operation = path_item.get("post")
        if operation is None or (idempotent is not None and (path, "post") not in idempotent):
            continue
        touched = True
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("in") == "header" and p.get("name", "").lower() == HEADER.lower() for p in parameters):
            parameters.append(dict(PARAMETER))
        operation.setdefault("responses", {})
        for status in ERRORS:
            _add_error(operation, status)
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                response.setdefault("headers", {}).setdefault(REPLAYED_HEADER, REPLAYED_HEADER_SPEC)
    if touched:
        schemas = result.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("Error", FALLBACK_ERROR_COMPONENT)
    return result
