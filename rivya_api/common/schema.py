"""OpenAPI helpers every resource uses: the error component, error responses, the hook.

In a view::

    from rivya_api.common.schema import error_responses

    @extend_schema(
        responses={200: FileOutputSerializer, **error_responses(400, 404, 415, codes={415: ["invalid_media"]})},
    )

``error_responses(*statuses, codes=…)`` declares each status with the ``Error``
component (``{"error": {type, code, message, param, request_id}}``) and an
example per code. Some statuses need not be listed: ``postprocess_schema``
(``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``) adds 401 and 429 to every
operation with a security requirement, 400/413/415 to every operation with a
request body, 500 everywhere (each only where the view did not declare it
itself), removes any ``default`` response, and documents ``X-Request-Id`` on
every response. ``list_of(Serializer)`` documents a list envelope,
``constant_field("file")`` an ``object`` field, ``PAGINATION_PARAMETERS`` the
``limit``/``after`` query parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from rest_framework import serializers

from rivya_api.common.errors import TYPE_BY_STATUS
from rivya_api.keys.scopes import OPENAPI_EXTENSION, operation_scope

__all__ = [
    "ErrorDetailSerializer",
    "ErrorExample",
    "ErrorSerializer",
    "PAGINATION_PARAMETERS",
    "constant_field",
    "error_example",
    "error_responses",
    "list_of",
    "postprocess_schema",
]


# Named in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] as ErrorTypeEnum.
ERROR_TYPES = sorted(set(TYPE_BY_STATUS.values()))


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ERROR_TYPES, help_text="Broad class of the error, by HTTP status.")
    code = serializers.CharField(help_text="Stable, machine-readable reason, e.g. `insufficient_credits`.")
    message = serializers.CharField(help_text="Human-readable explanation; may change, do not parse it.")
    param = serializers.CharField(
        allow_null=True, help_text="The request parameter at fault (`input.width`, `file`), or null."
    )
    request_id = serializers.CharField(
        allow_null=True, help_text="Same as the `X-Request-Id` response header; quote it to support."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error response, for every status."""

    error = ErrorDetailSerializer()


@dataclass(frozen=True)
class ErrorExample:
    """One documented error: its code, message and param (for the example in the document)."""

    code: str
    message: str
    param: str | None = None


# The usual reason for each status, used when a view does not name its codes.
DEFAULT_ERRORS: dict[int, ErrorExample] = {
    400: ErrorExample("invalid_parameter", "Invalid value for limit: must be between 1 and 100.", "limit"),
    401: ErrorExample("invalid_api_key", "Invalid API key."),
    402: ErrorExample("insufficient_credits", "The wallet's available credits do not cover this request."),
    403: ErrorExample("permission_denied", "You cannot perform this action."),
    404: ErrorExample("not_found", "No such object."),
    405: ErrorExample("method_not_allowed", 'Method "PUT" not allowed.'),
    409: ErrorExample("conflict", "The request conflicts with the object's current state."),
    410: ErrorExample("gone", "The object was deleted."),
    413: ErrorExample("request_too_large", "The request body is too large."),
    415: ErrorExample("unsupported_media_type", 'Unsupported media type "text/plain" in request.'),
    422: ErrorExample("idempotency_key_reused", "This Idempotency-Key was used with a different request."),
    429: ErrorExample("rate_limit_exceeded", "Too many requests; retry after the Retry-After delay."),
    500: ErrorExample("internal_error", "An internal error occurred. Quote the request id if you contact support."),
    503: ErrorExample("service_unavailable", "The service is temporarily unavailable."),
}

DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: `param` names the offending parameter.",
    401: "Missing, invalid, revoked or expired API key, or a disabled account (`WWW-Authenticate: Bearer`).",
    402: "Not enough available credits.",
    403: "Not allowed.",
    404: "No such object (objects of other accounts are never visible).",
    405: "Method not allowed on this path.",
    409: "Conflicts with the object's current state or a request in flight.",
    410: "The object is gone.",
    413: "Too large.",
    415: "Unsupported content type or media.",
    422: "Well-formed but cannot be processed.",
    429: "Rate limit exceeded; retry after `Retry-After` seconds.",
    500: "Internal error; quote `request_id` to support.",
    503: "Temporarily unavailable.",
}

REQUEST_ID_EXAMPLE = "req_3hTzbW8sLQ1vA0nXcE5fKp2M"


def error_example(status: int, code: str, message: str, param: str | None = None) -> OpenApiExample:
    """An ``OpenApiExample`` of one error body."""
    body = {
        "error": {
            "type": TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "message": message,
            "param": param,
            "request_id": REQUEST_ID_EXAMPLE,
        }
    }
    return OpenApiExample(code, value=body, response_only=True, status_codes=[str(status)])


def _as_example(status: int, item: str | ErrorExample | tuple[Any, ...]) -> ErrorExample:
    if isinstance(item, ErrorExample):
        return item
    if isinstance(item, tuple):
        return ErrorExample(*item)
    default = DEFAULT_ERRORS.get(status)
    message = default.message if default and default.code == item else item.replace("_", " ").capitalize() + "."
    return ErrorExample(item, message)


def error_responses(
    *statuses: int,
    codes: Mapping[int, Iterable[str | ErrorExample | tuple[Any, ...]]] | None = None,
    descriptions: Mapping[int, str] | None = None,
) -> dict[int, OpenApiResponse]:
    """``{status: OpenApiResponse(Error, examples)}`` for each status, for ``extend_schema(responses=…)``.

    ``codes[status]`` lists the error codes that status can carry here, as plain
    codes, ``ErrorExample``s or ``(code, message, param)`` tuples; each becomes
    an example. Without it the status gets its usual example.
    """
    codes = codes or {}
    descriptions = descriptions or {}
    responses: dict[int, OpenApiResponse] = {}
    for status in sorted(set(statuses) | set(codes)):
        items = [_as_example(status, item) for item in codes.get(status, [])]
        if not items and status in DEFAULT_ERRORS:
            items = [DEFAULT_ERRORS[status]]
        examples = [error_example(status, item.code, item.message, item.param) for item in items]
        responses[status] = OpenApiResponse(
            response=ErrorSerializer,
            description=descriptions.get(status) or DESCRIPTIONS.get(status, "Error."),
            examples=examples,
        )
    return responses


# --- constants -----------------------------------------------------------------------------------------


class _ConstantField(serializers.Field):
    value: str = ""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        kwargs.setdefault("source", "*")
        super().__init__(**kwargs)

    def to_representation(self, instance: Any) -> str:
        return self.value


_constant_fields: dict[str, type[_ConstantField]] = {}


def constant_field(value: str, **kwargs: Any) -> serializers.Field:
    """A read-only field that always renders ``value`` (e.g. ``object = constant_field("file")``).

    Documented as ``{"type": "string", "const": value}``: a JSON Schema constant, so
    code generators make it a literal type and the many ``object`` fields of the
    API never collide as enums.
    """
    if value not in _constant_fields:
        field_class = type(
            f"Constant{value.title().replace('.', '').replace('_', '')}Field", (_ConstantField,), {"value": value}
        )
        _constant_fields[value] = extend_schema_field({"type": "string", "const": value})(field_class)
    return _constant_fields[value](**kwargs)


# --- lists ---------------------------------------------------------------------------------------------

PAGINATION_PARAMETERS = [
    OpenApiParameter("limit", int, required=False, description="Page size, 1 to 100 (default 20).", default=20),
    OpenApiParameter("after", str, required=False, description="The `next_cursor` of the previous page."),
]

_list_serializers: dict[str, serializers.Serializer] = {}


def list_of(item_serializer: type[serializers.Serializer], *, name: str | None = None) -> serializers.Serializer:
    """The list envelope ``{object: "list", data: [...], has_more, next_cursor}`` around ``item_serializer``.

    For views that build the body with ``rivya_api.common.pagination.list_body``;
    use it as ``responses={200: list_of(FileOutputSerializer)}`` together with
    ``parameters=PAGINATION_PARAMETERS``. The component is named ``<Item>List``.
    """
    name = name or item_serializer.__name__.removesuffix("Serializer").removesuffix("Output") + "List"
    if name not in _list_serializers:
        envelope = inline_serializer(
            name=name,
            fields={
                "object": constant_field("list"),
                "data": item_serializer(many=True),
                "has_more": serializers.BooleanField(),
                "next_cursor": serializers.CharField(
                    allow_null=True, help_text="Pass as `after` for the next page; null on the last page."
                ),
            },
        )
        # The envelope is one object, even on a "list" action (spectacular would wrap it in an array).
        extend_schema_serializer(many=False)(type(envelope))
        _list_serializers[name] = envelope
    return _list_serializers[name]


# --- postprocessing hook -----------------------------------------------------------------------------

ERROR_REF = {"$ref": "#/components/schemas/Error"}
# 503: the database (or broker) is unreachable for a moment, e.g. during a restart.
AUTHENTICATED_STATUSES = (401, 429, 500, 503)
# Any request with a body can meet the parser and the size guard: malformed JSON (400), a body
# over MAX_REQUEST_BYTES (413), a Content-Type the view does not parse (415).
BODY_STATUSES = (400, 413, 415)
REQUEST_ID_HEADER = {
    "description": "The request id: the client's `X-Request-Id` if it sent a sane one, else `req_…`.",
    "schema": {"type": "string"},
}
RETRY_AFTER_HEADER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
WWW_AUTHENTICATE_HEADER = {"description": '`Bearer realm="api"`.', "schema": {"type": "string"}}


def _error_response(status: int) -> dict[str, Any]:
    example = DEFAULT_ERRORS[status]
    value = {
        "error": {
            "type": TYPE_BY_STATUS.get(status, "api_error"),
            "code": example.code,
            "message": example.message,
            "param": example.param,
            "request_id": REQUEST_ID_EXAMPLE,
        }
    }
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF, "examples": {example.code: {"value": value}}}},
    }


def _is_authenticated(operation: Mapping[str, Any]) -> bool:
    """Whether the operation can answer 401: it names at least one security scheme."""
    return any(requirement for requirement in operation.get("security") or [])


class RivyaAutoSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema``, plus each operation's scope (``x-rivya-scope``) from the view's
    ``required_scopes`` (``rivya_api.keys.scopes``): the document shows the one map the permission enforces."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or getattr(self.view, "required_scopes", None) is None:
            return operation
        scope = operation_scope(self.view, self.method)
        operation[OPENAPI_EXTENSION] = scope
        note = (
            f"Needs a key with the `{scope}` scope (else 403 `insufficient_scope`)."
            if scope
            else "Any API key may call this, whatever its scopes."
        )
        description = operation.get("description") or ""
        operation["description"] = f"{description}\n\n{note}" if description else note
        return operation


def extend_schema(**kwargs: Any) -> Any:
    """drf-spectacular's ``extend_schema``, built on its ``AutoSchema`` whatever ``DEFAULT_SCHEMA_CLASS`` says.

    On a view method, drf-spectacular bases the extension on the project's
    ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` as it is when the module is imported; a host
    that leaves DRF's default there would get operations DRF's own schema class
    answers (and a broken document). Seeding the method's ``kwargs`` with the schema
    class is drf-spectacular's own mechanism for an explicit base.
    """
    decorator = spectacular_extend_schema(**kwargs)

    def apply(target: Any) -> Any:
        if inspect.isfunction(target) and "schema" not in getattr(target, "kwargs", {}):
            target.kwargs = {**getattr(target, "kwargs", {}), "schema": RivyaAutoSchema}
        return decorator(target)

    return apply


def preprocess_rivya_endpoints(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple]:
    """Keep the API's operations (views marked ``rivya_api_view``): a host's own DRF views stay out of the document."""
    return [endpoint for endpoint in endpoints if getattr(getattr(endpoint[3], "cls", None), "rivya_api_view", False)]


# Operations that take a model id (403 ``model_not_allowed`` for a key whose allow-list leaves it out)
# and operations that reserve credits (402 ``key_credit_limit_reached`` through a limited key).
MODEL_OPERATIONS = ("getModel", "createGeneration", "chat_completions_create")
RESERVING_OPERATIONS = ("createGeneration", "chat_completions_create")
KEY_ERRORS: dict[str, tuple[int, ErrorExample, str]] = {
    "insufficient_scope": (
        403,
        ErrorExample(
            "insufficient_scope",
            "This API key lacks the generations:write scope this request needs. Use a key with "
            "generations:write, or ask for one to be created with it.",
        ),
        "The key lacks the scope this operation needs (`insufficient_scope`, naming it)",
    ),
    "model_not_allowed": (
        403,
        ErrorExample(
            "model_not_allowed",
            "This API key may not use the model 'rivya-video-1'; it may use: rivya-image-1.",
            "model",
        ),
        "or the model is outside the key's `models` (`model_not_allowed`)",
    ),
    "key_credit_limit_reached": (
        402,
        ErrorExample(
            "key_credit_limit_reached",
            "Credit limit reached: 498 of 500 credits per month (UTC) used, 4 more requested; "
            "it resets at 2027-01-01T00:00:00Z.",
        ),
        "or the key's credit limit is reached (`key_credit_limit_reached`, `x-should-retry: false`)",
    ),
}


def _add_error_example(responses: dict[str, Any], code: str) -> None:
    status, example, description = KEY_ERRORS[code]
    response = responses.get(str(status))
    if response is None:
        response = responses[str(status)] = {
            "description": description + ".",
            "content": {"application/json": {"schema": ERROR_REF, "examples": {}}},
        }
    else:
        response["description"] = (
            f"{response.get('description', '').rstrip('.')}; {description[0].lower()}{description[1:]}."
        )
    examples = response["content"]["application/json"].setdefault("examples", {})
    body = error_example(status, example.code, example.message, example.param).value
    examples.setdefault(code, {"value": body})
    if code == "key_credit_limit_reached":
        response.setdefault("headers", {})["x-should-retry"] = {
            "description": "`false` on a 402: retrying cannot help.",
            "schema": {"type": "string"},
        }


def _key_errors(operation: dict[str, Any], responses: dict[str, Any]) -> None:
    if operation.get(OPENAPI_EXTENSION):
        _add_error_example(responses, "insufficient_scope")
    if operation.get("operationId") in MODEL_OPERATIONS:
        _add_error_example(responses, "model_not_allowed")
    if operation.get("operationId") in RESERVING_OPERATIONS:
        _add_error_example(responses, "key_credit_limit_reached")


def postprocess_schema(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular hook: standard errors on every operation, no ``default``, ``X-Request-Id`` headers."""
    for path_item in (result.get("paths") or {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "put", "post", "patch", "delete", "head", "options", "trace"):
                continue
            responses = operation.setdefault("responses", {})
            _key_errors(operation, responses)
            responses.pop("default", None)
            statuses = AUTHENTICATED_STATUSES if _is_authenticated(operation) else (500,)
            if "requestBody" in operation:
                statuses = (*statuses, *BODY_STATUSES)
            for status in statuses:
                responses.setdefault(str(status), _error_response(status))
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-Id", REQUEST_ID_HEADER)
                if status in ("429", "503"):
                    headers.setdefault("Retry-After", RETRY_AFTER_HEADER)
                if status == "401":
                    headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE_HEADER)
    return result
