"""HTTP for the Chat API: ``POST /chat/completions`` and the sessions.

Every view here is an ``AsyncApiView`` (``rivya_api.common.async_views``): DRF's
authentication, scopes, throttles, ``Idempotency-Key`` and error rendering run
once per request, whichever handler answers.

``POST /chat/completions`` peeks at ``stream``:

- ``stream`` false or absent: ``post`` (sync) validates, commits (credits held)
  and runs the turn on the event loop, and answers its result; the
  Idempotency-Key is the ordinary one of every POST.
- ``stream: true``: ``stream`` (async). In the checks' worker call ``prepare``
  claims the Idempotency-Key and plans the turn (``NewTurn``), or finds the
  turn's stored reply (``EndedTurn``) or the turn still running under the key
  (``RunningTurn``); the database connection is given back before the first
  token. The model's request then goes out while the turn is committed in
  another worker call, and nothing of it is shown or charged unless that
  commit succeeds (a refusal is the same 402/409 a non-streaming request gets).
  The response (``rivya_api.chat.sse``) starts once the model has accepted the
  request (the upstream's HTTP 200, as a direct call's would) or its first
  event is in, so a model that refuses the request or fails before that is an
  ordinary HTTP error (502/503/504), not a broken stream; a failure after that
  is a ``data: {"error": …}`` event and the stream closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema_view
from rest_framework import viewsets
from rest_framework.response import Response

from rivya_api.catalog.selectors import catalog_model_get
from rivya_api.chat import funds_hint, selectors, services, sse, streams
from rivya_api.chat.schema import (
    COMPLETIONS_OPERATION,
    MESSAGE_EXAMPLE,
    SESSION_DETAIL_EXAMPLE,
    SESSION_EXAMPLE,
    SESSION_STREAM_OPERATION,
)
from rivya_api.chat.serializers import (
    ChatCompletionInputSerializer,
    ChatMessageOutputSerializer,
    ChatSessionDetailOutputSerializer,
    ChatSessionOutputSerializer,
)
from rivya_api.chat.sse import SESSION_HEADER
from rivya_api.chat.turns import ChatTurn
from rivya_api.common import hostile
from rivya_api.common.async_views import AsyncApiView
from rivya_api.common.db import release_connections
from rivya_api.common.errors import ApiError
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
from rivya_api.idempotency.http import claim_refusal
from rivya_api.idempotency.services import ClaimOutcome, IdempotencyClaim
from rivya_api.keys.scopes import key_model_check

logger = logging.getLogger(__name__)


# What accepting a streamed turn comes to (``ChatCompletionsView.prepare``).
@dataclass(frozen=True)
class NewTurn:
    """A new turn, planned (nothing written yet), and the Idempotency-Key claim its end settles."""

    plan: services.ChatTurnPlan
    claim: IdempotencyClaim | None = None


@dataclass(frozen=True)
class EndedTurn:
    """The Idempotency-Key's turn has ended: its stored reply is replayed as events."""

    record: Any  # the IdempotencyRecord


@dataclass(frozen=True)
class RunningTurn:
    """The Idempotency-Key's turn is still running (here or in another process): the retry follows it."""

    message: Any  # the turn's in-progress assistant ChatMessage


async def _run_turn(plan: services.ChatTurnPlan) -> ChatTurn:
    turn = ChatTurn(plan).start()
    await turn.wait()
    return turn


def _provider_error(turn: ChatTurn) -> ApiError:
    error = turn.error
    assert error is not None
    return ApiError(error.message, code=error.code, status=error.status, headers=dict(error.headers))


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


class ChatCompletionsView(AsyncApiView):
    """``POST /chat/completions`` (see the module docstring)."""

    required_scopes = {"post": "chat:write"}  # rivya_api.keys.scopes
    parser_classes = [JSONParser]  # the OpenAI request shape is JSON only (anything else: 415)
    streaming = False  # set on the instance that serves a stream (``stream``)
    auth_cache_read = staticmethod(funds_hint.auth_cache_read)  # authentication reads the key's funds hint too

    @property
    def idempotency_enabled(self) -> bool:  # type: ignore[override]
        return not self.streaming  # a stream claims its key in ``prepare``: a retry may follow the turn

    def handler_for(self, request: HttpRequest) -> Any:
        if _wants_stream(request):
            self.streaming = True
            return self.stream
        return super().handler_for(request)

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
        hint, hint_entry = funds_hint.for_turn(request)
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
            funds_hint=hint,
            funds_hint_entry=hint_entry,
        )

    @extend_schema(**COMPLETIONS_OPERATION)
    def post(self, request: Any) -> Response:
        plan = self.plan_turn(request)
        services.chat_turn_commit(plan)
        # The model may take a while: hold no database connection meanwhile.
        release_connections()
        turn = async_to_sync(_run_turn)(plan)
        if turn.error is not None:
            raise _provider_error(turn)
        return Response(turn.completion(), headers={SESSION_HEADER: plan.session_id})

    def prepare(self, request: Any) -> NewTurn | EndedTurn | RunningTurn:
        """Accept a streamed turn under its ``Idempotency-Key``, if it has one (in the checks' worker call).

        Raises the 409/422 refusals and any error of ``plan_turn``; a planning error under a
        claimed key is stored as the key's outcome, as for any POST.
        """
        claim = self.idempotency_claim_request(request)
        if claim is None:
            return NewTurn(self.plan_turn(request))
        key = claim.record.key
        if claim.outcome is ClaimOutcome.REPLAY:
            return EndedTurn(claim.record)
        if claim.outcome is ClaimOutcome.IN_FLIGHT:
            running = selectors.chat_turn_for_idempotency_key(account=self.account, key=key)
            if running is not None:
                return RunningTurn(running)
            raise claim_refusal(claim)
        if not claim.proceed:
            raise claim_refusal(claim)
        # A turn still in progress under this key was started by a process whose claim lapsed:
        # it died mid-turn. Release its hold now (it was never answered) and run the turn once more.
        orphan = selectors.chat_turn_for_idempotency_key(account=self.account, key=key)
        if orphan is not None:
            services.chat_turn_fail(turn_id=orphan.public_id, error_code="turn_interrupted")
        self._idempotency_claim = claim  # an error while planning is the key's outcome
        plan = self.plan_turn(request, idempotency_key=key)
        self._idempotency_claim = None  # the turn settles the claim when it ends
        return NewTurn(plan, claim)

    async def stream(self, request: Any, accepted: NewTurn | EndedTurn | RunningTurn) -> HttpResponse:
        """``stream: true`` (see the module docstring); documented with ``post``."""
        if isinstance(accepted, EndedTurn):
            return sse.replay_stream(accepted.record)
        if isinstance(accepted, RunningTurn):
            message = accepted.message
            attached = await sse.follow_turn_anywhere(message.public_id, after=0, session_id=message.session.public_id)
            if attached is None:  # it ended meanwhile and is no longer buffered: the client retries into the replay
                raise ApiError(
                    "Retry after the Retry-After delay.",
                    code="idempotency_key_in_flight",
                    status=409,
                    headers={"Retry-After": "1"},
                )
            return attached
        return await self._start_stream(accepted)

    async def _start_stream(self, accepted: NewTurn) -> HttpResponse:
        plan = accepted.plan
        # The model's request goes out now, while the turn is committed (credits held) beside it:
        # the model's time to first token hides the commit's.
        record = accepted.claim.record if accepted.claim is not None else None
        turn = ChatTurn(plan).start(idempotency_record=record, commit=True)
        refusal = await turn.wait_accepted()
        if refusal is not None:
            self._idempotency_claim = accepted.claim  # the refusal is the key's outcome
            raise refusal
        # Start the response once the model has accepted the request or said something (or failed),
        # so a model that refuses it is a plain HTTP error the SDKs know how to handle; starting at the
        # model's acceptance keeps the response's start off the first token's path.
        if not (turn.log.events or turn.log.closed or turn.reply_started):
            await turn.log.wait_for_change(float(api_settings.CHAT_KEEPALIVE_SECONDS))
        still_running = turn.task is not None and not turn.task.done()
        if not (not turn.log.events and still_running) and turn.failed_before_output:
            raise _provider_error(turn)
        return sse.sse_response(sse.event_stream(turn), plan.session_id)


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


@dataclass(frozen=True)
class StreamPosition:
    """Where a resumed stream starts: after event ``after`` of turn ``turn_id``."""

    turn_id: str
    after: int


class ChatSessionStreamView(AsyncApiView):
    """``GET /chat/sessions/{session_id}/stream``: replay and follow the session's latest turn."""

    required_scopes = {"get": "chat:read"}  # rivya_api.keys.scopes
    http_method_names = ["get", "options"]  # HEAD would follow a live stream for nothing

    def prepare(self, request: Any, session_id: str) -> StreamPosition:
        after = _stream_position(request)
        session = _session_or_404(self, session_id)
        turn = selectors.chat_session_latest_turn(session=session)
        if turn is None:
            raise ApiError(f"Session {session_id} has no turn yet.", code="no_turn", status=404)
        return StreamPosition(turn.public_id, after)

    @extend_schema(**SESSION_STREAM_OPERATION)
    async def get(self, request: Any, position: StreamPosition, session_id: str) -> HttpResponse:
        response = await sse.follow_turn_anywhere(position.turn_id, after=position.after, session_id=session_id)
        if response is None:
            raise ApiError(
                f"The events of the latest turn of {session_id} are no longer buffered; "
                f"GET /api/v1/chat/sessions/{session_id} has its saved message.",
                code="stream_expired",
                status=410,
            )
        return response


class ChatSessionCancelView(AsyncApiView):
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
