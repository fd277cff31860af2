"""HTTP for the Chat API: ``POST /chat/completions`` and the sessions.

``chat_completions`` is the route's view: an async Django view, so a stream
holds no thread while the model produces. It only peeks at ``stream``:

- ``stream`` false or absent: the request goes whole to ``ChatCompletionsView``
  (DRF), so authentication, throttling, ``Idempotency-Key`` and error rendering
  are those of every other endpoint. The turn runs on the event loop and the
  view waits for its result.
- ``stream: true``: the same DRF view object authenticates, throttles,
  validates and prepares the turn in one short worker-thread call (its
  database connection is given back before the first token); the model's
  request then goes out while the turn is committed (credits held) in another,
  and nothing of it is shown or charged unless that commit succeeds (a
  refusal is the same 402/409 a non-streaming request gets). The response is an
  async iterator over the turn's event log: one ``id:``-numbered ``data:``
  event per chunk, a usage chunk with ``choices: []``, ``data: [DONE]``, and
  ``: keep-alive`` comments while the model is silent. The response starts
  once the model has accepted the request (the upstream's HTTP 200, as a
  direct call's would) or its first event is in, so a model that refuses the
  request or fails before that is an ordinary HTTP error (502/503/504), not a
  broken stream; a failure after that is a ``data: {"error": …}`` event and
  the stream closes.

``ChatCompletionsView`` also documents the operation in OpenAPI, with both the
JSON and the event-stream response (the route callback carries it as ``cls``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_view
from rest_framework import viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from rivya_api.catalog.selectors import catalog_model_get
from rivya_api.chat import selectors, services, streams
from rivya_api.chat.schema import (
    COMPLETION_EXAMPLE,
    EVENT_STREAM_SCHEMA,
    MESSAGE_EXAMPLE,
    SESSION_DETAIL_EXAMPLE,
    SESSION_EXAMPLE,
    STREAM_EXAMPLE,
)
from rivya_api.chat.serializers import (
    ChatCompletionInputSerializer,
    ChatCompletionSerializer,
    ChatMessageOutputSerializer,
    ChatSessionDetailOutputSerializer,
    ChatSessionOutputSerializer,
)
from rivya_api.chat.turns import KEEPALIVE, ChatTurn, db_call, release_connections, replay_events
from rivya_api.common import hostile
from rivya_api.common.errors import ApiError, error_body, error_response
from rivya_api.common.pagination import page_response
from rivya_api.common.parsers import JSONParser
from rivya_api.common.schema import (
    PAGINATION_PARAMETERS,
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.views import AccountScopedMixin
from rivya_api.conf import api_settings
from rivya_api.idempotency.http import (
    REPLAYED_HEADER,
    claim_refusal,
    idempotency_key_from_request,
    outcome_record,
    replay_response,
    request_fingerprint,
)
from rivya_api.idempotency.services import (
    ClaimOutcome,
    IdempotencyClaim,
    idempotency_claim,
)
from rivya_api.keys.scopes import key_model_check
from rivya_api.metrics import sse_stream_tracked

logger = logging.getLogger(__name__)

SESSION_HEADER = "Rivya-Session-Id"


async def _run_turn(plan: services.ChatTurnPlan) -> ChatTurn:
    turn = ChatTurn(plan).start()
    await turn.wait()
    return turn


def _provider_error(turn: ChatTurn) -> ApiError:
    error = turn.error
    assert error is not None
    return ApiError(error.message, code=error.code, status=error.status, headers=dict(error.headers))


class ChatCompletionsView(AccountScopedMixin, APIView):
    """``POST /chat/completions`` (see the module docstring)."""

    required_scopes = {"post": "chat:write"}  # rivya_api.keys.scopes

    parser_classes = [JSONParser]  # the OpenAI request shape is JSON only (anything else: 415)
    # Set on the instance that serves a stream: streams do not go through the
    # stored-response idempotency of the other POSTs.
    streaming = False

    @property
    def idempotency_enabled(self) -> bool:  # type: ignore[override]
        return not self.streaming

    def accept_stream(self, request: Any) -> tuple[str, Any]:
        """Accept a streaming turn under its ``Idempotency-Key``, if it has one.

        Returns ``("turn", (plan, record))`` for a new, prepared turn (``record`` is the
        claim to complete when the turn ends, or None), ``("replay", record)``
        for a key whose turn already ended, ``("attach", turn_id)`` for a key
        whose turn is still running. Raises the 409/422 refusals and any error
        of ``plan_turn``; an error stored under the key is replayed as stored.
        """
        key = idempotency_key_from_request(request)
        if key is None:
            return "turn", (self.plan_turn(request), None)
        claim = idempotency_claim(
            account=self.account,
            key=key,
            fingerprint=request_fingerprint(request),
            request_method=request.method,
            request_path=request.path,
        )
        if claim.outcome is ClaimOutcome.REPLAY:
            return "replay", claim.record
        if claim.outcome is ClaimOutcome.IN_FLIGHT:
            running = selectors.chat_turn_for_idempotency_key(account=self.account, key=key)
            if running is not None:
                return "attach", running
            raise claim_refusal(claim)
        if not claim.proceed:
            raise claim_refusal(claim)
        # A turn still in progress under this key was started by a process whose claim lapsed:
        # it died mid-turn. Release its hold now (it was never answered) and run the turn once more.
        orphan = selectors.chat_turn_for_idempotency_key(account=self.account, key=key)
        if orphan is not None:
            services.chat_turn_fail(turn_id=orphan.public_id, error_code="turn_interrupted")
        try:
            plan = self.plan_turn(request, idempotency_key=key)
        except Exception as exc:
            self.refusal_response(request, exc, claim.record)
            raise
        return "turn", (plan, claim.record)

    def plan_turn(self, request: Any, idempotency_key: str = "") -> services.ChatTurnPlan:
        """Validate the request and prepare its turn (nothing written yet; see ``chat_turn_prepare``)."""
        serializer = ChatCompletionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model = catalog_model_get(data["model"])
        key_model_check(request.user.api_key, model.id)
        if model.kind != "chat":
            raise ApiError(
                f"{model.id} is {'an' if model.kind[:1] in 'aeiou' else 'a'} {model.kind} model; "
                "chat completions need a chat model "
                "(GET /api/v1/models?kind=chat lists them).",
                code="model_not_chat",
                param="model",
            )
        sampling = {
            name: data.get(name)
            for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
            if data.get(name) is not None
        }
        return services.chat_turn_prepare(
            account=self.account,
            model=model,
            messages=list(data["messages"]),
            session_id=data.get("session_id"),
            max_output_tokens=data.get("max_output_tokens"),
            sampling=sampling,
            stop=data.get("stop") or [],
            metadata=data.get("metadata") or {},
            idempotency_key=idempotency_key,
            actor=request.user.api_key.public_id,
            spend_limit=request.user.api_key.spend_limit_id,
        )

    def accept_turn(self, request: Any) -> services.ChatTurnPlan:
        """Validate the request and start its turn (reserving credits)."""
        plan = self.plan_turn(request)
        services.chat_turn_commit(plan)
        return plan

    def refusal_response(self, request: Any, refusal: BaseException, record: Any) -> Any:
        """The error response of a refused turn, stored under its Idempotency-Key if it has one."""
        response = self.finalize_response(request, self.handle_exception(refusal))
        response.render()
        if record is not None:
            outcome_record(record=record, response=response)
        return response

    @extend_schema(
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
    def post(self, request: Any) -> Response:
        plan = self.accept_turn(request)
        # The model may take a while: hold no database connection meanwhile.
        release_connections()
        turn = async_to_sync(_run_turn)(plan)
        if turn.error is not None:
            raise _provider_error(turn)
        return Response(turn.completion(), headers={SESSION_HEADER: plan.session_id})


def _wants_stream(request: HttpRequest) -> bool:
    if request.method != "POST" or not (request.content_type or "").endswith("json"):
        return False
    body = getattr(request, "rivya_json", None)  # the gate parsed and checked it
    if body is None:
        try:
            body = hostile.json_loads(request.body or b"{}")
        except ApiError:
            return False  # DRF answers the parse error
    return isinstance(body, dict) and body.get("stream") is True


def _drf_prepare(view_class: type, request: HttpRequest, kwargs: dict[str, Any], work: Any, **initkwargs: Any) -> Any:
    """Run a DRF twin's checks (authentication, permissions, throttles) and then ``work(view, request)``.

    For the async views: one short call in a worker thread, whose database
    connection is given back before it returns. Returns ``(result, view,
    drf_request, None)``, or ``(None, view, drf_request, error_response)``
    rendered exactly as the DRF view would have rendered it.
    """
    view = view_class(**initkwargs)
    view.setup(request, **kwargs)
    view.args, view.kwargs = (), kwargs
    drf_request = view.initialize_request(request, **kwargs)
    view.request = drf_request
    view.headers = view.default_response_headers
    try:
        view.initial(drf_request, **kwargs)
        return work(view, drf_request), view, drf_request, None
    except Exception as exc:
        response = view.finalize_response(drf_request, view.handle_exception(exc))
        response.render()
        return None, view, drf_request, response
    finally:
        release_connections()


async def _event_stream(turn: ChatTurn, *, after: int = 0) -> Any:
    """The SSE body of a live (or recently ended) turn of this process, from event ``after`` on.

    A client that goes away only stops this reader; the turn goes on.
    """
    keepalive = float(api_settings.CHAT_KEEPALIVE_SECONDS)
    async for event in turn.log.follow(after=after, keepalive=keepalive):
        yield b": keep-alive\n\n" if event is KEEPALIVE else event.encode()


async def _redis_event_stream(turn_id: str, *, after: int) -> Any:
    """The SSE body of a turn run by another process, from its Redis buffer."""
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


def _sse_response(body: Any, session_id: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        sse_stream_tracked(body, stream="chat"), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    response[SESSION_HEADER] = session_id
    return response


async def _stream_response(request: HttpRequest) -> HttpResponse:
    accepted, view, drf_request, refusal = await db_call(
        _drf_prepare,
        ChatCompletionsView,
        request,
        {},
        lambda view, drf_request: view.accept_stream(drf_request),
        streaming=True,
    )
    if refusal is not None:
        return refusal
    kind, payload = accepted
    if kind == "replay":
        return view.finalize_response(drf_request, _replay_stream(payload))
    if kind == "attach":
        attached = await _follow_turn_anywhere(payload.public_id, after=0, session_id=payload.session.public_id)
        if attached is None:  # it ended meanwhile and is no longer buffered: the client retries into the replay
            return error_response(
                409, "idempotency_key_in_flight", "Retry after the Retry-After delay.", None, {"Retry-After": "1"}
            )
        return view.finalize_response(drf_request, attached)
    plan, record = payload
    # The model's request goes out now, while the turn is committed (credits held) beside it:
    # the model's time to first token hides the commit's.
    turn = ChatTurn(plan).start(idempotency_record=record, commit=True)
    refusal = await turn.wait_accepted()
    if refusal is not None:
        return await db_call(view.refusal_response, drf_request, refusal, record)
    # Start the response once the model has accepted the request or said something (or failed),
    # so a model that refuses it is a plain HTTP error the SDKs know how to handle; starting at the
    # model's acceptance keeps the response's start off the first token's path.
    if not (turn.log.events or turn.log.closed or turn.reply_started):
        await turn.log.wait_for_change(float(api_settings.CHAT_KEEPALIVE_SECONDS))
    if not turn.log.events and turn.task is not None and not turn.task.done():
        pass  # accepted, or a slow model: start the stream (keep-alives while it is silent)
    elif turn.failed_before_output:
        error = turn.error
        return error_response(error.status, error.code, error.message, None, dict(error.headers))
    return view.finalize_response(drf_request, _sse_response(_event_stream(turn), plan.session_id))


@csrf_exempt
async def chat_completions(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The route of ``POST /chat/completions`` (see the module docstring)."""
    if _wants_stream(request):
        return await _stream_response(request)
    return await sync_to_async(_drf_chat_completions)(request)


_drf_chat_completions = ChatCompletionsView.as_view()
# drf-spectacular documents the route through its DRF twin.
chat_completions.cls = ChatCompletionsView  # type: ignore[attr-defined]
chat_completions.initkwargs = {}  # type: ignore[attr-defined]


@extend_schema_view(
    list=extend_schema(
        operation_id="chat_sessions_list",
        summary="List chat sessions",
        description="The account's chat sessions created through the API, newest first.",
        tags=["chat"],
        parameters=PAGINATION_PARAMETERS,
        examples=[
            OpenApiExample(
                "sessions",
                value={"object": "list", "data": [SESSION_EXAMPLE], "has_more": False, "next_cursor": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
        responses={
            200: list_of(ChatSessionOutputSerializer),
            **error_responses(400),
        },
    ),
    retrieve=extend_schema(
        operation_id="chat_sessions_retrieve",
        summary="Get a chat session with its messages",
        description=(
            "The session and every message in order: role, content, image attachments (Files API ids), status, "
            "and for assistant messages the finish reason, token usage and credits charged."
        ),
        tags=["chat"],
        examples=[OpenApiExample("session", value=SESSION_DETAIL_EXAMPLE, response_only=True, status_codes=["200"])],
        responses={
            200: ChatSessionDetailOutputSerializer,
            **error_responses(404, codes={404: [("session_not_found", "No chat session 'chat_…'.", None)]}),
        },
    ),
)
class ChatSessionViewSet(AccountScopedMixin, viewsets.ViewSet):
    """``GET /chat/sessions`` and ``GET /chat/sessions/{session_id}``."""

    required_scopes = {"list": "chat:read", "retrieve": "chat:read"}  # rivya_api.keys.scopes

    def list(self, request: Any) -> Response:
        sessions = selectors.chat_sessions_for_account(account=self.account)
        return page_response(request, sessions, lambda page: ChatSessionOutputSerializer(page, many=True).data)

    def retrieve(self, request: Any, session_id: str) -> Response:
        session = selectors.chat_session_get(account=self.account, session_id=session_id)
        if session is None:
            raise ApiError(f"No chat session {session_id!r}.", code="session_not_found", status=404)
        return Response(ChatSessionDetailOutputSerializer(session).data)


def _replay_stream(record: Any) -> HttpResponse:
    """An Idempotency-Key replay for a streaming request: the stored completion as events."""
    if record.response_status != 200:  # the turn failed: its error, as stored
        return replay_response(IdempotencyClaim(ClaimOutcome.REPLAY, record))
    completion = json.loads(bytes(record.response_body))
    events = replay_events(completion)

    async def body() -> Any:
        for event in events:
            yield event.encode()

    response = _sse_response(body(), completion["session_id"])
    response[REPLAYED_HEADER] = "true"
    return response


async def _follow_turn_anywhere(turn_id: str, *, after: int, session_id: str) -> HttpResponse | None:
    """The SSE response following ``turn_id`` from this process or Redis; None if not buffered."""
    turn = streams.local_turns.get(turn_id)
    if turn is not None:
        return _sse_response(_event_stream(turn, after=after), session_id)
    if streams.redis_enabled() and await streams.redis_has_turn(turn_id):
        return _sse_response(_redis_event_stream(turn_id, after=after), session_id)
    return None


# --- Resume and cancel -------------------------------------------------------------------


def _stream_position(request: Any) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id") or "0"
    try:
        position = int(raw)
    except ValueError:
        position = -1
    if not 0 <= position < 2**63:  # a Redis stream id's range
        raise ApiError("Last-Event-ID (or last_event_id) must be a non-negative integer.", param="last_event_id")
    return position


def _session_or_404(view: Any, session_id: str) -> Any:
    session = selectors.chat_session_get(account=view.account, session_id=session_id, with_messages=False)
    if session is None:
        raise ApiError(f"No chat session {session_id!r}.", code="session_not_found", status=404)
    return session


class ChatSessionStreamView(AccountScopedMixin, APIView):
    """``GET /chat/sessions/{session_id}/stream``: replay and follow the session's latest turn."""

    required_scopes = {"get": "chat:read"}  # rivya_api.keys.scopes

    def locate(self, request: Any, session_id: str) -> tuple[str, int]:
        after = _stream_position(request)
        session = _session_or_404(self, session_id)
        turn = selectors.chat_session_latest_turn(session=session)
        if turn is None:
            raise ApiError(f"Session {session_id} has no turn yet.", code="no_turn", status=404)
        return turn.public_id, after

    @extend_schema(
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
            OpenApiParameter(
                "last_event_id", type=int, required=False, description="Same as the `Last-Event-ID` header."
            ),
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
                    410: [
                        ("stream_expired", "The events of the latest turn of chat_… are no longer buffered; …", None)
                    ],
                },
            ),
        },
    )
    def get(self, request: Any, session_id: str) -> Response:  # documentation only: served by chat_session_stream
        raise ApiError("Use the asynchronous route.", status=500, code="internal_error")


@csrf_exempt
async def chat_session_stream(request: HttpRequest, session_id: str) -> HttpResponse:
    """The route of ``GET /chat/sessions/{session_id}/stream``."""
    if request.method != "GET":  # DRF answers other methods: 405 (or OPTIONS) after authentication
        return await sync_to_async(_drf_chat_session_stream)(request, session_id=session_id)
    located, view, drf_request, refusal = await db_call(
        _drf_prepare,
        ChatSessionStreamView,
        request,
        {"session_id": session_id},
        lambda view, drf_request: view.locate(drf_request, session_id),
    )
    if refusal is not None:
        return refusal
    turn_id, after = located
    response = await _follow_turn_anywhere(turn_id, after=after, session_id=session_id)
    if response is None:
        return error_response(
            410,
            "stream_expired",
            f"The events of the latest turn of {session_id} are no longer buffered; "
            f"GET /api/v1/chat/sessions/{session_id} has its saved message.",
        )
    return view.finalize_response(drf_request, response)


_drf_chat_session_stream = ChatSessionStreamView.as_view()
chat_session_stream.cls = ChatSessionStreamView  # type: ignore[attr-defined]
chat_session_stream.initkwargs = {}  # type: ignore[attr-defined]


class ChatSessionCancelView(AccountScopedMixin, APIView):
    """``POST /chat/sessions/{session_id}/cancel``: stop the session's running turn."""

    required_scopes = {"post": "chat:write"}  # rivya_api.keys.scopes

    @extend_schema(
        operation_id="chat_sessions_cancel",
        summary="Cancel the session's running turn",
        description=(
            "Stops the model and settles the turn: the reply produced so far is saved as an `incomplete` "
            "message and charged for its tokens (a turn that produced nothing is charged nothing). Returns the "
            "turn's assistant message. Cancelling a turn that already ended returns it unchanged."
        ),
        tags=["chat"],
        request=None,
        examples=[
            OpenApiExample(
                "canceled turn",
                value={**MESSAGE_EXAMPLE, "status": "incomplete", "finish_reason": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
        responses={
            200: ChatMessageOutputSerializer,
            **error_responses(
                404,
                409,
                422,
                codes={
                    404: [
                        ("session_not_found", "No chat session 'chat_…'.", None),
                        ("no_turn", "Session … has no turn yet.", None),
                    ]
                },
            ),
        },
    )
    def post(self, request: Any, session_id: str) -> Response:
        session = _session_or_404(self, session_id)
        turn = selectors.chat_session_latest_turn(session=session)
        if turn is None:
            raise ApiError(f"Session {session_id} has no turn yet.", code="no_turn", status=404)
        if turn.status == turn.Status.IN_PROGRESS:
            release_connections()
            if not async_to_sync(streams.request_cancel)(turn.public_id):
                # Not running in any process we can reach: it died; nothing to settle from.
                services.chat_turn_fail(turn_id=turn.public_id, error_code="canceled")
            turn = selectors.chat_turn_wait_ended(turn_id=turn.public_id, timeout=10.0)
        return Response(ChatMessageOutputSerializer(turn).data)
