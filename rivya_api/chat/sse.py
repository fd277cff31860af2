"""The chat event streams as HTTP: the ``text/event-stream`` bodies and responses.

One ``id:``-numbered ``data:`` event per chunk, ``: keep-alive`` comments while
the model is silent, read from the turn's log in this process
(``event_stream``) or from its Redis mirror (``redis_event_stream``), or made
up from a stored completion for an Idempotency-Key replay (``replay_stream``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from rivya_api.chat import streams
from rivya_api.chat.turns import KEEPALIVE, replay_events
from rivya_api.common.errors import error_body
from rivya_api.common.request_thread import release_request_thread
from rivya_api.conf import api_settings
from rivya_api.idempotency.http import REPLAYED_HEADER, replay_response
from rivya_api.idempotency.services import ClaimOutcome, IdempotencyClaim
from rivya_api.metrics import sse_stream_tracked

logger = logging.getLogger(__name__)

SESSION_HEADER = "Rivya-Session-Id"


def sse_response(body: Any, session_id: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        sse_stream_tracked(body, stream="chat"), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    response[SESSION_HEADER] = session_id
    return response


async def event_stream(turn: Any, *, after: int = 0) -> Any:
    """The SSE body of a live (or recently ended) turn of this process, from event ``after`` on.

    A client that goes away only stops this reader; the turn goes on.
    """
    release_request_thread()  # no thread of this request waits, idle, for the stream to end
    keepalive = float(api_settings.CHAT_KEEPALIVE_SECONDS)
    async for events in turn.log.follow(after=after, keepalive=keepalive):
        if events is KEEPALIVE:
            yield b": keep-alive\n\n"
        elif len(events) == 1:
            yield events[0].encode()
        else:  # already waiting: one body message, still one SSE event each
            yield b"".join(event.encode() for event in events)


async def redis_event_stream(turn_id: str, *, after: int) -> Any:
    """The SSE body of a turn run by another process, from its Redis buffer."""
    release_request_thread()
    keepalive = float(api_settings.CHAT_KEEPALIVE_SECONDS)
    try:
        async for item in streams.redis_follow(turn_id, after=after, keepalive=keepalive):
            if item is None:
                yield b": keep-alive\n\n"
            else:
                yield f"id: {item[0]}\ndata: {item[1]}\n\n".encode()
    except streams.TurnGoneError:
        error = error_body(
            502,
            "turn_interrupted",
            "The process running this turn stopped before the turn ended; nothing is charged for it. Send "
            "the request again (with the same Idempotency-Key it runs once more).",
        )
        yield f"data: {json.dumps(error)}\n\n".encode()
    except Exception:  # redis-py errors (Redis is an optional dependency of the apps)
        # Headers are sent: end with the documented error event rather than a broken connection.
        logger.exception("Lost Redis while following chat turn %s", turn_id)
        error = error_body(503, "stream_unavailable", "The stream's buffer is unavailable; resume again shortly.")
        yield f"data: {json.dumps(error)}\n\n".encode()


async def follow_turn_anywhere(turn_id: str, *, after: int, session_id: str) -> HttpResponse | None:
    """The SSE response following ``turn_id`` from this process or Redis; None if not buffered."""
    turn = streams.local_turns.get(turn_id)
    if turn is not None:
        return sse_response(event_stream(turn, after=after), session_id)
    if streams.redis_enabled() and await streams.redis_has_turn(turn_id):
        return sse_response(redis_event_stream(turn_id, after=after), session_id)
    return None


def replay_stream(record: Any) -> HttpResponse:
    """An Idempotency-Key replay for a streaming request: the stored completion as events."""
    if record.response_status != 200:  # the turn failed: its error, as stored
        return replay_response(IdempotencyClaim(ClaimOutcome.REPLAY, record))
    completion = json.loads(bytes(record.response_body))
    events = replay_events(completion)

    async def body() -> Any:
        for event in events:
            yield event.encode()

    response = sse_response(body(), completion["session_id"])
    response[REPLAYED_HEADER] = "true"
    return response
