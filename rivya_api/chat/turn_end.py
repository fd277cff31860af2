"""A chat turn's end: finish (settle), fail (release) and the sweep of stale turns, each one transaction.

Step 3 of a turn's life (``rivya_api.chat.services`` has the whole of it, and re-exports these):

``chat_turn_finish`` — one transaction: save the assistant message (complete, or partial when the
turn stopped early) and settle the hold from the real usage, rounded up to a whole credit; the
rest of the hold returns. ``chat_turn_fail`` — one transaction: release the whole hold and take
the turn's messages out of the session's history.

On PostgreSQL a finish that settles, whose caller names the turn's model, is one query
(``pg_finish.finish_batched``); anything it cannot decide is left to the transaction above.

Finish and fail are idempotent: the second call for a turn that already ended returns the saved
message without touching the ledger.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from rivya_api import metrics
from rivya_api.catalog.exceptions import ModelNotFoundError
from rivya_api.catalog.selectors import catalog_model_get, catalog_token_price
from rivya_api.chat import funds_hint, pg_finish, sqlite_finish
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.chat.providers.base import ChatUsage
from rivya_api.conf import api_settings
from rivya_billing import services as billing
from rivya_billing.exceptions import HoldNotPendingError
from rivya_billing.services.holds import _settle_joined

logger = logging.getLogger(__name__)

# What chat_turn_finish saves of the reply.
REPLY_FIELDS = "content finish_reason status prompt_tokens completion_tokens credits_charged completed_at".split()


def storable(text: str) -> str:
    """``text`` as a PostgreSQL text column takes it: a NUL and a lone surrogate become U+FFFD.

    Else the finish (or the fail) raises on every path and the turn stays in progress: the client
    keeps the reply and pays nothing.
    """
    return without_lone_surrogates(text).replace("\x00", "\ufffd")


def without_lone_surrogates(text: str) -> str:
    """``text`` as UTF-8 takes it: a lone surrogate becomes U+FFFD, a pair held as two code points its character."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # UTF-16 pairs what it can and replaces the rest
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def chat_turn_reference(turn_id: str) -> str:
    """The ledger reference of a turn's hold."""
    return f"chat_turn:{turn_id}"


def _locked_turn(turn_id: str) -> ChatMessage:
    if pg_finish.enabled():  # the same query, built once (see there)
        return pg_finish.locked_turn(turn_id)
    if sqlite_finish.enabled():  # the same query on SQLite (see there)
        return sqlite_finish.locked_turn(turn_id)
    # Locks the message and its session, as ever; the account (its ledger's owner) comes in the same
    # query, unlocked, rather than in a query of its own when the hold is settled or released.
    return (
        ChatMessage.objects.select_for_update(of=("self", "session"))
        .select_related("session__account")
        .get(public_id=turn_id, role=ChatMessage.Role.ASSISTANT)
    )


def chat_turn_finish(
    *,
    turn_id: str,
    content: str,
    finish_reason: str,
    usage: ChatUsage,
    complete: bool = True,
    model_id: str | None = None,
    funds_hint_entry: str | None = None,
) -> ChatMessage:
    """Save the assistant message and settle the turn's hold from ``usage``, together.

    ``complete=False`` saves a partial reply (the turn stopped before the model
    finished) as ``incomplete``; it is charged for what was produced, and a turn
    that produced nothing is released in full. The charge is the catalog's
    token price of ``usage`` (rounded up, at least 1 credit), capped at the hold.
    Idempotent: a turn that already ended is returned unchanged. A NUL or a lone surrogate in
    ``content`` is saved as U+FFFD (``storable``).

    ``model_id``: the model the caller planned the turn with (``ChatTurnPlan.model_id``). With it,
    on PostgreSQL, a finish that settles may be sent as one query (``pg_finish.finish_batched``),
    which checks it against the turn's session; anything else takes the transaction below.
    ``funds_hint_entry``: where the batch leaves the wallet's available (``rivya_api.chat.funds_hint``).
    """
    reply = {"turn_id": turn_id, "content": storable(content), "finish_reason": finish_reason, "usage": usage}
    if model_id is not None and pg_finish.batched():
        message = _finish_batched(**reply, complete=complete, model_id=model_id, hint=funds_hint_entry)
        if message is not None:
            return message
    return _finish(**reply, complete=complete)


def _reply(*, content: str, finish_reason: str, usage: ChatUsage, complete: bool, now: Any) -> dict[str, Any]:
    """The reply's fields but ``credits_charged`` (``REPLY_FIELDS``), as both paths save them."""
    return {
        "content": content,
        "finish_reason": finish_reason if complete else "",
        "status": ChatMessage.Status.COMPLETED if complete else ChatMessage.Status.INCOMPLETE,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "completed_at": now,
    }


def _finish_batched(
    *, turn_id: str, content: str, finish_reason: str, usage: ChatUsage, complete: bool, model_id: str, hint: Any
) -> ChatMessage | None:
    """The finish as one query when it settles (a release, or a model the catalog no longer lists, is
    the plain path's); None when it was not taken or wrote nothing (``pg_finish.finish_batched``)."""
    if not complete and usage.completion_tokens <= 0:
        return None  # a release
    try:
        model = catalog_model_get(model_id)
    except ModelNotFoundError:
        return None  # the plain path prices the session's model, and raises what it raises
    price = catalog_token_price(model, input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
    if price <= 0:
        return None  # a release
    now = timezone.now()
    reply = _reply(content=content, finish_reason=finish_reason, usage=usage, complete=complete, now=now)
    reference = chat_turn_reference(turn_id)
    remember = None if hint is None else (lambda available: funds_hint.remember(hint, available))
    return pg_finish.finish_batched(
        turn_id=turn_id,
        reference=reference,
        model_id=model_id,
        price=price,
        reply=reply,
        now=now,
        available_to=remember,
    )


@transaction.atomic
def _finish(*, turn_id: str, content: str, finish_reason: str, usage: ChatUsage, complete: bool) -> ChatMessage:
    message = _locked_turn(turn_id)
    if message.status != ChatMessage.Status.IN_PROGRESS:
        return message
    session = message.session
    charged = _settle_turn(message=message, usage=usage, complete=complete)
    now = timezone.now()
    for name, value in _reply(
        content=content, finish_reason=finish_reason, usage=usage, complete=complete, now=now
    ).items():
        setattr(message, name, value)
    message.credits_charged = charged
    if pg_finish.enabled():  # the three UPDATEs below in one statement (see there)
        pg_finish.finish_rows(message=message, fields=REPLY_FIELDS, charged=charged, now=now)
        return message
    if sqlite_finish.enabled():  # the three UPDATEs below, built once (see there)
        sqlite_finish.finish_rows(message=message, fields=REPLY_FIELDS, charged=charged, now=now)
        return message
    message.save(update_fields=REPLY_FIELDS)
    added = (
        ChatMessage.objects.filter(turn_id=turn_id).exclude(pk=message.pk).update(status=ChatMessage.Status.COMPLETED)
    )
    ChatSession.objects.filter(pk=session.pk).update(
        message_count=F("message_count") + added + 1,
        credits_spent=F("credits_spent") + charged,
        updated_at=now,
    )
    return message


def _settle_turn(*, message: ChatMessage, usage: ChatUsage, complete: bool) -> int:
    """Settle the turn's hold at the token price of ``usage`` (capped at the hold), or release it; the charge."""
    session = message.session
    reference = chat_turn_reference(message.public_id)
    if complete or usage.completion_tokens > 0:
        price = catalog_token_price(
            catalog_model_get(session.model),
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
        )
        charged = min(price, message.credits_reserved or 0)
    else:
        charged = 0
    try:
        if charged > 0:  # joined: no savepoint (a refusal writes nothing; any other error ends the finish)
            _settle_joined(account=session.account, reference=reference, amount=charged)
        else:
            billing.credits_release(account=session.account, reference=reference)
    except HoldNotPendingError as exc:
        # The hold's lease lapsed and the sweeper returned the credits before the
        # turn ended: the reply is saved, and it is free.
        logger.warning("Chat turn %s ended after its hold was %s; not charged", message.public_id, exc.state)
        charged = 0
    return charged


@transaction.atomic
def chat_turn_fail(*, turn_id: str, content: str = "", error_code: str = "model_error") -> ChatMessage:
    """Release the turn's whole hold and mark its messages failed (out of the session's history).

    Idempotent: a turn that already ended is returned unchanged. ``content`` as ``storable`` makes it.
    """
    message = _locked_turn(turn_id)
    if message.status != ChatMessage.Status.IN_PROGRESS:
        return message
    content = storable(content)
    try:
        billing.credits_release(account=message.session.account, reference=chat_turn_reference(turn_id))
    except HoldNotPendingError as exc:  # already expired by the sweeper: nothing left to release
        logger.warning("Chat turn %s failed after its hold was %s", turn_id, exc.state)
    message.content = content
    message.status = ChatMessage.Status.FAILED
    message.finish_reason = ""
    message.credits_charged = 0
    message.completed_at = timezone.now()
    message.error_code = error_code
    message.save(update_fields=["content", "status", "finish_reason", "credits_charged", "completed_at", "error_code"])
    ChatMessage.objects.filter(turn_id=turn_id).exclude(pk=message.pk).update(status=ChatMessage.Status.FAILED)
    ChatSession.objects.filter(pk=message.session_id).update(updated_at=message.completed_at)
    return message


def chat_turns_fail_stale(*, now: Any = None) -> int:
    """Fail (and release) turns still ``in_progress`` after ``CHAT_TURN_TIMEOUT_SECONDS``.

    A turn whose process died never finishes by itself; this returns its
    credits and frees its session. Each turn is failed in its own transaction
    (``chat_turn_fail``, idempotent), so a turn that ends meanwhile is left as it ended.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=api_settings.CHAT_TURN_TIMEOUT_SECONDS)
    stale = ChatMessage.objects.filter(
        role=ChatMessage.Role.ASSISTANT, status=ChatMessage.Status.IN_PROGRESS, created_at__lt=cutoff
    ).values_list("public_id", flat=True)
    failed = 0
    for turn_id in list(stale.order_by("created_at")[:500]):
        try:
            if chat_turn_fail(turn_id=turn_id, error_code="turn_timeout").status == ChatMessage.Status.FAILED:
                failed += 1
        except Exception:
            # One turn the sweep cannot fail must not keep it from the others (it is tried again next run).
            logger.exception("Could not fail stale chat turn %s; moving on to the next", turn_id)
            metrics.background_row_failed(job="chat_turns_fail_stale")
    return failed
