"""Chat turns: start (reserve), finish (settle) and fail (release), each one transaction.

A turn's life, and where the money moves:

1. ``chat_turn_prepare`` reads and computes, writing nothing: the session
   (refusing a second concurrent turn), the prompt (stored history + the
   client's new messages, images inline as ``data:`` URLs), the reservation
   (prompt tokens + the turn's output budget at the model's price; an account
   that plainly cannot pay is refused here) and the turn's ids. Then
   ``chat_turn_commit``, one transaction: lock (or create) the session, check
   again that no turn is in progress and none ended since the history was
   read, save the new messages and an ``in_progress`` assistant message, and
   hold the credits under the turn's reference. A refusal
   (``ChatCreditsError``, ``ChatSessionBusyError``) rolls all of it
   back: a 402 leaves no session, message or hold behind. A streamed turn
   sends the model its request while the commit runs (``rivya_api.chat.turns``),
   and writes, shows and charges nothing of it unless the commit succeeds.
2. The model runs outside any transaction (``rivya_api.chat.turns``).
3. ``chat_turn_finish`` (settle) or ``chat_turn_fail`` (release), each one transaction
   (``rivya_api.chat.turn_end``, re-exported here).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from rivya_api.catalog.selectors import catalog_provider, catalog_token_price
from rivya_api.chat import funds_hint as funds_hint_module
from rivya_api.chat import pg_commit, sqlite_commit
from rivya_api.chat.exceptions import (
    ChatContextLengthError,
    ChatCreditsError,
    ChatSessionBusyError,
    ChatSessionModelMismatchError,
    ChatSessionNotFoundError,
)
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.chat.providers.base import ChatProvider, ChatRequest

# The turn's end, re-exported: callers and hosts reach every step of a turn here.
from rivya_api.chat.turn_end import chat_turn_fail, chat_turn_finish, chat_turn_reference, chat_turns_fail_stale
from rivya_api.conf import api_settings
from rivya_api.files.selectors import file_get_usable, file_open
from rivya_api.ids import public_id
from rivya_api.keys.limits import key_reservation_observe
from rivya_billing import selectors as billing_selectors
from rivya_billing.exceptions import InsufficientCreditsError
from rivya_billing.services import pg_reserve
from rivya_billing.services.holds import _reserve_joined

logger = logging.getLogger(__name__)

__all__ = [
    "ChatTurnPlan",
    "NewMessage",
    "chat_turn_commit",
    "chat_turn_fail",
    "chat_turn_finish",
    "chat_turn_prepare",
    "chat_turn_reference",
    "chat_turns_fail_stale",
]

TITLE_LENGTH = 80
HISTORY_STATUSES = (ChatMessage.Status.COMPLETED, ChatMessage.Status.INCOMPLETE)
DEFAULT_MAX_OUTPUT_TOKENS = 1024
DEFAULT_CONTEXT_WINDOW = 8192


@dataclass(frozen=True)
class NewMessage:
    """A client message of this turn, validated: text plus the Files API ids of its images."""

    role: str
    text: str
    images: list[dict[str, str]] = field(default_factory=list)  # [{"file_id", "detail"?}]


@dataclass
class ChatTurnPlan:
    """Everything the runner needs once the turn is accepted; lives in memory only."""

    account_id: Any
    session_id: str
    turn_id: str
    model_id: str
    created: int
    provider: ChatProvider
    request: ChatRequest
    prompt_tokens: int  # our count of the prompt (exact for the local model)
    credits_reserved: int
    new_session: bool
    include_usage: bool = True
    pending: PendingTurn | None = None  # what chat_turn_commit writes; None once written
    funds_hint_entry: str | None = None  # where the turn's finish leaves the wallet's available (funds_hint)


@dataclass
class PendingTurn:
    """What ``chat_turn_prepare`` read and ``chat_turn_commit`` writes."""

    account: Any
    session: ChatSession  # unsaved for a new session
    history_as_of: Any  # the session's updated_at when its history was read
    messages: list[NewMessage]
    metadata: dict[str, str]
    idempotency_key: str
    actor: str = ""  # who the ledger names for the turn's credits, e.g. the API key's public id
    spend_limit: int | None = None  # the API key's credit limit, counted with the reservation


def _image_data_url(*, account: Any, file_id: str, param: str) -> str:
    """The account's Files API image ``file_id`` as an inline ``data:`` URL.

    Raises the Files errors (404 no such file, 400 deleted/expired or not an
    image) with ``param`` naming the content part.
    """
    file = file_get_usable(account=account, file_id=file_id, kinds=["image"], param=param)
    with file_open(file) as handle:
        payload = base64.b64encode(handle.read()).decode("ascii")
    return f"data:{file.content_type};base64,{payload}"


def _provider_message(*, account: Any, role: str, text: str, images: list[dict[str, str]], param: str) -> dict:
    if not images:
        return {"role": role, "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for index, image in enumerate(images):
        url = _image_data_url(account=account, file_id=image["file_id"], param=f"{param}[{index}]")
        image_url = {"url": url}
        if image.get("detail"):
            image_url["detail"] = image["detail"]
        parts.append({"type": "image_url", "image_url": image_url})
    return {"role": role, "content": parts}


def _session_for_turn(*, account: Any, session_id: str | None, model_id: str) -> tuple[ChatSession, bool]:
    """The turn's session, checked (read only; ``chat_turn_commit`` checks again under its lock)."""
    if session_id is None:
        session = ChatSession(account=account, model=model_id, source=ChatSession.Source.API)
        session.public_id = public_id("chat")
        return session, True
    session = ChatSession.objects.filter(account=account, public_id=session_id, source=ChatSession.Source.API).first()
    if session is None:
        raise ChatSessionNotFoundError(f"No chat session {session_id!r}.", param="session_id")
    if session.model != model_id:
        raise ChatSessionModelMismatchError(
            f"Session {session_id} uses model {session.model}; continue it with the same model."
        )
    _check_not_busy(session)
    return session, False


def _check_not_busy(session: ChatSession) -> None:
    busy_since = timezone.now() - timedelta(seconds=api_settings.CHAT_TURN_TIMEOUT_SECONDS)
    if session.messages.filter(status=ChatMessage.Status.IN_PROGRESS, created_at__gte=busy_since).exists():
        raise _busy(session)


def _busy(session: ChatSession) -> ChatSessionBusyError:
    return ChatSessionBusyError(
        f"Session {session.public_id} has a turn in progress; send the next turn when it has finished.",
        param="session_id",
    )


def chat_turn_prepare(
    *,
    account: Any,
    model: Any,
    messages: list[NewMessage],
    session_id: str | None = None,
    max_output_tokens: int | None = None,
    sampling: dict[str, Any] | None = None,
    stop: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str = "",
    actor: str = "",
    spend_limit: int | None = None,
    funds_hint: int | None = None,
    funds_hint_entry: str | None = None,
) -> ChatTurnPlan:
    """Plan a turn without writing anything: its prompt, its price, its ids (see the module docstring).

    ``model`` is a listed chat ``CatalogModel``; ``actor`` (the API key's public id) is
    recorded on the turn's ledger entries, as generations record theirs. Raises ``ChatSessionNotFoundError``,
    ``ChatSessionBusyError``, ``ChatContextLengthError``,
    or ``ChatCreditsError`` when the account plainly cannot
    pay (``chat_turn_commit`` is what holds the credits). ``funds_hint``: the wallet's available as a
    recent turn's finish saw it (``rivya_api.chat.funds_hint``): when it covers the price the wallet
    is not read; ``funds_hint_entry``: where this turn's finish leaves it.
    """
    session, new_session = _session_for_turn(account=account, session_id=session_id, model_id=model.id)
    prompt = _turn_prompt(account=account, session=session, new_session=new_session, messages=messages)
    provider = catalog_provider(model)
    prompt_tokens, max_output_tokens, credits = _turn_budget(
        model=model, provider=provider, prompt=prompt, max_output_tokens=max_output_tokens
    )
    _credits_precheck(account=account, credits=credits, funds_hint=funds_hint)
    if new_session:
        first_text = next((m.text for m in messages if m.role == "user" and m.text), "")
        session.title = " ".join(first_text.split())[:TITLE_LENGTH]
    return ChatTurnPlan(
        account_id=account.pk,
        session_id=session.public_id,
        turn_id=public_id("msg"),
        model_id=model.id,
        created=int(time.time()),
        provider=provider,
        request=_chat_request(prompt=prompt, max_output_tokens=max_output_tokens, stop=stop, sampling=sampling),
        prompt_tokens=prompt_tokens,
        credits_reserved=credits,
        new_session=new_session,
        funds_hint_entry=funds_hint_entry,
        pending=PendingTurn(
            account=account,
            session=session,
            history_as_of=session.updated_at,
            messages=messages,
            metadata=metadata or {},
            idempotency_key=idempotency_key,
            actor=actor,
            spend_limit=spend_limit,
        ),
    )


def _credits_precheck(*, account: Any, credits: int, funds_hint: int | None) -> None:
    """``ChatCreditsError`` when the wallet plainly cannot pay; not read when the hint covers ``credits``
    (never refused on the hint: the wallet decides; ``rivya_api.chat.funds_hint``)."""
    if funds_hint_module.covers(funds_hint, credits):
        return
    available = billing_selectors.credits_available(account=account)
    if available < credits:
        raise ChatCreditsError(requested=credits, available=available)


def _turn_prompt(*, account: Any, session: ChatSession, new_session: bool, messages: list[NewMessage]) -> list:
    """The provider's messages: the session's stored history, then the new messages."""
    prompt: list[dict[str, Any]] = []
    if not new_session:
        for message in session.messages.filter(status__in=HISTORY_STATUSES).order_by("created_at", "pk"):
            images = [{"file_id": file_id} for file_id in message.attachments]
            prompt.append(
                _provider_message(
                    account=account, role=message.role, text=message.content, images=images, param="session_id"
                )
            )
    for index, message in enumerate(messages):
        prompt.append(
            _provider_message(
                account=account,
                role=message.role,
                text=message.text,
                images=message.images,
                param=f"messages[{index}].content",
            )
        )
    return prompt


def _turn_budget(*, model: Any, provider: Any, prompt: list, max_output_tokens: int | None) -> tuple[int, int, int]:
    """(prompt tokens, output budget, credits to hold); ``ChatContextLengthError`` when they do not fit."""
    prompt_tokens = ChatProvider.count_prompt_tokens(provider, prompt)  # our own count, unpadded
    reserve_prompt_tokens = provider.count_prompt_tokens(prompt)  # the provider's upper bound
    limit_output = int(model.limits.get("max_output_tokens", DEFAULT_MAX_OUTPUT_TOKENS))
    context_window = int(model.limits.get("context_window", DEFAULT_CONTEXT_WINDOW))
    room = context_window - prompt_tokens
    if max_output_tokens is None:
        max_output_tokens = min(limit_output, room)
    if max_output_tokens < 1 or max_output_tokens > room:
        raise ChatContextLengthError(
            f"The prompt is {prompt_tokens} tokens; with {max(max_output_tokens, 1)} output tokens it does not fit "
            f"the model's context window of {context_window} tokens.",
            param="messages",
        )
    credits = catalog_token_price(model, input_tokens=reserve_prompt_tokens, output_tokens=max_output_tokens)
    return prompt_tokens, max_output_tokens, credits


def _chat_request(
    *, prompt: list, max_output_tokens: int, stop: list[str] | None, sampling: dict[str, Any] | None
) -> ChatRequest:
    sampling = sampling or {}
    return ChatRequest(
        messages=prompt,
        max_output_tokens=max_output_tokens,
        stop=list(stop or []),
        temperature=sampling.get("temperature"),
        top_p=sampling.get("top_p"),
        seed=sampling.get("seed"),
        presence_penalty=sampling.get("presence_penalty"),
        frequency_penalty=sampling.get("frequency_penalty"),
    )


def chat_turn_commit(plan: ChatTurnPlan) -> None:
    """Accept a prepared turn: save its messages and hold its upper-bound price, in one transaction.

    Checks again, under the session's row lock, what ``chat_turn_prepare`` read:
    no other turn in progress, and no turn ended since its history was read
    (``ChatSessionBusyError``). Raises ``ChatCreditsError`` when the hold is refused;
    every refusal leaves nothing behind. A plan commits once: what it wrote
    (``plan.pending``) is dropped when it is written, so a second commit is refused.
    """
    pending = plan.pending
    if pending is None:
        raise RuntimeError(f"The chat turn {plan.turn_id} was committed already.")
    try:
        if not _commit_batched(plan, pending):
            _commit(plan, pending)
    except InsufficientCreditsError as exc:
        available = exc.available
        if available is None:  # refused in the transaction it aborted (pg_commit's hold): read the wallet now
            available = billing_selectors.wallet_get(account=pending.account).available
        # A stale-high hint then costs this turn's model request only, not every turn's until it expires.
        funds_hint_module.remember(plan.funds_hint_entry, available)
        raise ChatCreditsError(requested=exc.requested, available=available) from None
    plan.pending = None  # the turn runs for minutes: keep no ORM objects it no longer needs


def _commit_batched(plan: ChatTurnPlan, pending: PendingTurn) -> bool:
    """The fast path's commit in one query (``pg_commit.commit_batched``): whether it was
    accepted. False: not taken, or refused with nothing written; ``_commit`` then decides and says why."""
    if not pg_commit.batched(spend_limit=pending.spend_limit):
        return False
    reserve = pg_reserve._joined_params(
        account=pending.account,
        amount=plan.credits_reserved,
        reference=chat_turn_reference(plan.turn_id),
        actor=pending.actor,
        spend_limit=pending.spend_limit,
        prefix=pg_commit.RESERVE,
    )
    now = timezone.now()
    row = pg_commit.commit_batched(
        session=pending.session,
        new_session=plan.new_session,
        rows=_turn_rows(plan, pending),
        now=now,
        busy_since=now - timedelta(seconds=api_settings.CHAT_TURN_TIMEOUT_SECONDS),
        history_as_of=pending.history_as_of,
        reserve=reserve,
    )
    if row is None:
        return False
    _batch_accepted(plan, reserve, row)
    return True


def _batch_accepted(plan: ChatTurnPlan, reserve: dict[str, Any], row: tuple[Any, ...]) -> None:
    """What follows a committed batch: the turn is accepted, so a failure here is logged, not raised.

    The key's limit is observed in its own transaction, as ``key_limit_refused`` does: its reached
    mark and its webhook event commit or roll back together, and a failed announcement is made by a
    later reservation (the mark is not set).
    """
    try:
        hold = pg_reserve._committed_hold(reserve, row, pg_commit.RESERVE)
        if hold.spend_limit_id is not None:  # else nothing to observe (and no transaction's two statements)
            with transaction.atomic():
                key_reservation_observe(hold)
    except Exception:
        logger.exception("After the chat turn %s was accepted, its hold could not be observed", plan.turn_id)


@transaction.atomic
def _commit(plan: ChatTurnPlan, pending: PendingTurn) -> None:
    _turn_rows_write(plan, pending)
    # The hold takes no savepoint (on any path): any refusal or error ends this whole transaction.
    hold = _reserve_joined(
        account=pending.account,
        amount=plan.credits_reserved,
        reference=chat_turn_reference(plan.turn_id),
        actor=pending.actor,
        spend_limit=pending.spend_limit,
    )
    key_reservation_observe(hold)


def _turn_rows(plan: ChatTurnPlan, pending: PendingTurn) -> list[dict[str, Any]]:
    """The turn's messages as column values: the client's, then the assistant's in-progress one, in that order."""
    blank = dict.fromkeys(("prompt_tokens", "completion_tokens", "credits_charged", "completed_at"))
    blank.update(status=ChatMessage.Status.IN_PROGRESS, turn_id=plan.turn_id, finish_reason="", error_code="")
    rows = [
        {**blank, "public_id": public_id("msg"), "role": message.role, "content": message.text}
        | {"attachments": [image["file_id"] for image in message.images], "credits_reserved": None}
        | {"metadata": {}, "idempotency_key": ""}
        for message in pending.messages
    ]
    rows.append(
        {**blank, "public_id": plan.turn_id, "role": ChatMessage.Role.ASSISTANT, "content": "", "attachments": []}
        | {"credits_reserved": plan.credits_reserved, "metadata": pending.metadata}
        | {"idempotency_key": pending.idempotency_key}
    )
    return rows


def _turn_rows_write(plan: ChatTurnPlan, pending: PendingTurn) -> None:
    """Create (or lock and check) the session and insert the turn's messages; ``ChatSessionBusyError``."""
    session, rows = pending.session, _turn_rows(plan, pending)
    busy_since = timezone.now() - timedelta(seconds=api_settings.CHAT_TURN_TIMEOUT_SECONDS)
    if pg_commit.enabled():  # the same rows in one or two statements (see there)
        now = timezone.now()
        if plan.new_session:
            pg_commit.insert_new_session(session=session, rows=rows, now=now)
            return
        if pg_commit.lock_session(session.pk) != pending.history_as_of:
            raise _busy(session)
        if not pg_commit.insert_unless_busy(session_pk=session.pk, rows=rows, now=now, busy_since=busy_since):
            raise _busy(session)
        return
    if sqlite_commit.enabled(len(rows)):  # the same rows, statements built once (see there)
        now = timezone.now()
        if plan.new_session:
            sqlite_commit.insert_new_session(session=session, rows=rows, now=now)
        elif not sqlite_commit.insert_unless_busy(
            session_pk=session.pk, rows=rows, now=now, busy_since=busy_since, history_as_of=pending.history_as_of
        ):
            raise _busy(session)
        return
    if plan.new_session:
        session.save()
    else:
        locked = ChatSession.objects.select_for_update().filter(pk=session.pk).first()
        if locked is None or locked.updated_at != pending.history_as_of:
            raise _busy(session)
        _check_not_busy(locked)
    ChatMessage.objects.bulk_create([ChatMessage(session=session, **row) for row in rows])  # one INSERT
