"""OpenAPI pieces of the Chat API: the event stream (the OpenAPI 3.1 way) and the examples.

An event stream is documented as ``text/event-stream`` whose schema is one event
(as OpenAPI 3.2's ``itemSchema``): an object with an ``id`` and a ``data`` string, which
is either ``[DONE]`` or JSON (``contentMediaType: application/json``) of the
chunk or the error schema (``contentSchema``). A schema-driven tester decodes
``data`` by that media type and validates it against that schema
(``tests/rivya_api/chat/test_openapi.py`` does exactly that with a real stream).
"""

from __future__ import annotations

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
