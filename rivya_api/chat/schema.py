"""OpenAPI pieces of the Chat API: the event stream (the OpenAPI 3.1 way) and the examples.

An event stream is documented as ``text/event-stream`` whose schema is one event
(as OpenAPI 3.2's ``itemSchema``): an object with an ``id`` and a ``data`` string, which
is either ``[DONE]`` or JSON (``contentMediaType: application/json``) of the
chunk or the error schema (``contentSchema``). A schema-driven tester decodes
``data`` by that media type and validates it against that schema
(``tests/rivya_api/chat/test_openapi.py`` does exactly that with a real stream).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from rivya_api.chat.serializers import ChatCompletionInputSerializer, ChatCompletionSerializer
from rivya_api.common.schema import error_responses

# The chunk, written out: the event stream's schema embeds it (a $ref to a serializer
# component would dangle, since no operation returns a bare chunk).
CHUNK_SCHEMA = {
    "title": "ChatCompletionChunk",
    "type": "object",
    "required": ["id", "object", "created", "model", "choices", "usage", "session_id"],
    "properties": {
        "id": {"type": "string", "description": "The turn's id (`msg_…`), the same on every chunk."},
        "object": {"type": "string", "const": "chat.completion.chunk"},
        "created": {"type": "integer", "description": "Unix seconds, the same on every chunk."},
        "model": {"type": "string"},
        "system_fingerprint": {"type": ["string", "null"]},
        "choices": {
            "type": "array",
            "description": "One choice; empty (never null) in the last chunk, which carries `usage`.",
            "items": {
                "type": "object",
                "required": ["index", "delta", "finish_reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "delta": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string", "const": "assistant"},
                            "content": {"type": ["string", "null"]},
                        },
                    },
                    "logprobs": {"type": "null"},
                    "finish_reason": {"type": ["string", "null"], "enum": ["stop", "length", "content_filter", None]},
                },
            },
        },
        "usage": {
            "description": "Null except in the last chunk.",
            "oneOf": [{"$ref": "#/components/schemas/ChatUsage"}, {"type": "null"}],
        },
        "session_id": {"type": "string"},
    },
}

EVENT_STREAM_SCHEMA = {
    # One event of the stream: schema-driven testers (schemathesis) validate each
    # server-sent event against the text/event-stream schema, as OpenAPI 3.2's itemSchema does.
    "type": "object",
    "description": (
        "Server-sent events (`text/event-stream`); this schema describes one event. Each event has an `id` "
        "(1, 2, 3 … within the turn) and a `data` string: the JSON of a `chat.completion.chunk`, then one usage "
        "chunk whose `choices` is `[]` and whose `usage` includes `credits`, then the literal `[DONE]`. A failure "
        "after the stream started is one event whose data is the JSON of an error object, after which the stream "
        "closes. Comment lines (`: keep-alive`) are sent while the model is silent; SSE parsers ignore them."
    ),
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "Increasing integer within the turn."},
        "event": {"type": "string", "description": "Always the default, `message`, when present."},
        "data": {
            "type": "string",
            "anyOf": [
                {"const": "[DONE]"},
                {"contentMediaType": "application/json", "contentSchema": CHUNK_SCHEMA},
                {"contentMediaType": "application/json", "contentSchema": {"$ref": "#/components/schemas/Error"}},
            ],
        },
    },
}

USAGE_EXAMPLE = {"prompt_tokens": 12, "completion_tokens": 48, "total_tokens": 60, "credits": 1}
COMPLETION_EXAMPLE = {
    "id": "msg_4kT9wQ2sLm8ZpX1cVb7NrY3e",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "rivya-chat-1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "This is Rivya's local development model: …", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE_EXAMPLE,
    "system_fingerprint": None,
    "session_id": "chat_9fH2kLp0QwErTy6uIoPa1sDf",
}
SESSION_EXAMPLE = {
    "id": "chat_9fH2kLp0QwErTy6uIoPa1sDf",
    "object": "chat.session",
    "title": "What is in this picture?",
    "model": "rivya-chat-1",
    "message_count": 2,
    "credits_spent": 1,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:02Z",
}
MESSAGE_EXAMPLE = {
    "id": "msg_4kT9wQ2sLm8ZpX1cVb7NrY3e",
    "object": "chat.message",
    "role": "assistant",
    "content": "This is Rivya's local development model: …",
    "attachments": [],
    "status": "completed",
    "finish_reason": "stop",
    "usage": USAGE_EXAMPLE,
    "credits_reserved": 3,
    "error_code": None,
    "created_at": "2026-01-01T00:00:01Z",
}
SESSION_DETAIL_EXAMPLE = {
    **SESSION_EXAMPLE,
    "messages": [
        {
            "id": "msg_7bN1xC5vQ0wE2rT4yU6iO8pA",
            "object": "chat.message",
            "role": "user",
            "content": "What is in this picture?",
            "attachments": [{"type": "image", "file_id": "file_2gH4jK6lZ8xC0vB1nM3qW5eR"}],
            "status": "completed",
            "finish_reason": None,
            "usage": None,
            "credits_reserved": None,
            "error_code": None,
            "created_at": "2026-01-01T00:00:00Z",
        },
        MESSAGE_EXAMPLE,
    ],
}

STREAM_EXAMPLE = (
    'id: 1\ndata: {"id":"msg_…","object":"chat.completion.chunk","created":1767225600,"model":"rivya-chat-1",'
    '"system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},'
    '"logprobs":null,"finish_reason":null}],"usage":null,"session_id":"chat_…"}\n\n'
    'id: 2\ndata: {…,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,…}\n\n'
    'id: 3\ndata: {…,"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13,'
    '"credits":1},…}\n\n'
    "id: 4\ndata: [DONE]\n\n"
)


# The operations' documentation (the views apply it with extend_schema).
COMPLETIONS_OPERATION = dict(
    operation_id="chat_completions_create",
    summary="Create a chat completion (one turn of a session)",
    description=(
        "OpenAI Chat Completions compatible: point an OpenAI SDK at `base_url=<host>/api/v1`. "
        "Without `session_id` a new session is created from the messages; with it, the session's stored "
        "history is prepended and only the new messages are sent. Credits for the prompt plus the output "
        "budget (`max_completion_tokens`, else the model's limit) are held when the turn starts (402 when "
        "they cannot be; nothing of the reply is sent before they are held), and the turn is charged its "
        "real usage, rounded up to a whole credit, when the reply is saved; a failed turn is charged nothing. "
        "`stream: true` answers `text/event-stream` with "
        "event ids; the turn runs on if the client disconnects (it is charged for the tokens it produces), "
        "the client resumes with `GET /chat/sessions/{session_id}/stream` and `Last-Event-ID`, and `POST "
        "/chat/sessions/{session_id}/cancel` stops it. `Idempotency-Key` applies to streaming turns too: a "
        "retry replays the ended turn or attaches to the running one. The session id is in the body and in "
        "the `Rivya-Session-Id` header."
    ),
    tags=["chat"],
    request=ChatCompletionInputSerializer,
    responses={
        (200, "application/json"): OpenApiResponse(
            response=ChatCompletionSerializer,
            description="The completion (`stream` false or absent).",
            examples=[OpenApiExample("completion", value=COMPLETION_EXAMPLE, media_type="application/json")],
        ),
        (200, "text/event-stream"): OpenApiResponse(
            response=EVENT_STREAM_SCHEMA,
            description="The completion as server-sent events (`stream: true`).",
            examples=[OpenApiExample("stream", value=STREAM_EXAMPLE, media_type="text/event-stream")],
        ),
        **error_responses(
            400,
            402,
            404,
            409,
            413,
            415,
            422,
            502,
            503,
            504,
            codes={
                400: [
                    ("unsupported_parameter", "tools is not supported (tool calling is not available).", "tools"),
                    (
                        "invalid_image_source",
                        "Images are attached by Files API id …",
                        "messages[0].content[1].image_url.url",
                    ),
                    ("context_length_exceeded", "The prompt is 5000 tokens; …", "messages"),
                    ("model_rejected_request", "The model rejected the request.", None),
                ],
                402: [("insufficient_credits", "This turn needs up to 3 credits …; 1 are available.", None)],
                404: [
                    ("model_not_found", "No model 'x'. GET /api/v1/models lists the available models.", "model"),
                    ("session_not_found", "No chat session 'chat_…'.", "session_id"),
                ],
                409: [
                    ("session_busy", "Session chat_… has a turn in progress; …", "session_id"),
                    (
                        "idempotency_key_in_flight",
                        "A request with this Idempotency-Key is still being processed; …",
                        None,
                    ),
                ],
                502: [
                    ("model_unavailable", "The model is unavailable right now; try again shortly.", None),
                    ("model_error", "The model failed while answering; try again.", None),
                ],
                503: [("model_overloaded", "The model is busy; retry after the Retry-After delay.", None)],
                504: [("model_timeout", "The model took too long to answer; try again.", None)],
            },
            descriptions={
                400: "Invalid or unsupported parameter (named in `param`), or the prompt is too long.",
                402: "`insufficient_credits`: the wallet cannot hold the turn's upper-bound price.",
                404: "Unknown model, or no such session for this account.",
                409: "The session has a turn in progress, or the Idempotency-Key is in use.",
                502: "The model failed before answering; nothing is charged.",
                503: "The model is overloaded (see Retry-After); nothing is charged.",
                504: "The model took too long; nothing is charged.",
            },
        ),
    },
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            location=OpenApiParameter.HEADER,
            required=False,
            description=(
                "Makes a turn safe to retry: the retry gets the first response (as events when it asks for "
                "a stream), or follows the turn live while it still runs; never a second model call."
            ),
        )
    ],
    examples=[
        OpenApiExample(
            "new session",
            request_only=True,
            value={"model": "rivya-chat-1", "messages": [{"role": "user", "content": "Hello"}]},
        ),
        OpenApiExample(
            "continue a session, with an image",
            request_only=True,
            value={
                "model": "rivya-chat-1",
                "session_id": "chat_…",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is in this picture?"},
                            {"type": "image_url", "image_url": {"url": "file_…"}},
                        ],
                    }
                ],
            },
        ),
    ],
)

SESSION_STREAM_OPERATION = dict(
    operation_id="chat_sessions_stream",
    summary="Resume the stream of a session's latest turn",
    description=(
        "Replays the events of the session's latest turn after the one named by `Last-Event-ID` (or "
        "`?last_event_id=`), then follows it live until `[DONE]`; without a position, the whole turn. Event "
        "ids are the increasing integers of the original stream, so a client that lost its connection "
        "reconnects here with the last id it saw and receives exactly what it missed. A turn keeps running "
        "when its client disconnects, and its events stay available for at least 5 minutes after it ends."
    ),
    tags=["chat"],
    parameters=[
        OpenApiParameter(
            "Last-Event-ID",
            location=OpenApiParameter.HEADER,
            required=False,
            description="The id of the last event received; the replay starts after it.",
        ),
        OpenApiParameter("last_event_id", type=int, required=False, description="Same as the `Last-Event-ID` header."),
    ],
    responses={
        (200, "text/event-stream"): OpenApiResponse(
            response=EVENT_STREAM_SCHEMA, description="The turn's events from the position on."
        ),
        **error_responses(
            400,
            404,
            410,
            codes={
                400: [("invalid_parameter", "Last-Event-ID … must be a non-negative integer.", "last_event_id")],
                404: [
                    ("session_not_found", "No chat session 'chat_…'.", None),
                    ("no_turn", "Session … has no turn yet.", None),
                ],
                410: [("stream_expired", "The events of the latest turn of chat_… are no longer buffered; …", None)],
            },
        ),
    },
)
