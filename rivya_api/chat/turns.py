"""Running an accepted turn: the model call, its events, and the settlement.

A ``ChatTurn`` runs as its own asyncio task, not inside the request that
started it: it reads the provider's stream, appends each piece of the reply
to the turn's ``TurnEventLog`` as a ready-to-send ``chat.completion.chunk``
event, and when the model is done saves the assistant message and settles the
credits (``chat_turn_finish``), or releases them when the model failed
(``chat_turn_fail``). Clients *follow* the log: the SSE response reads events
from it, the non-streaming view waits for the task and reads the result. So a
reader that goes away does not, by itself, stop the turn.

A client that disconnects from a stream does not stop its turn: the turn
runs to the end, is saved and charged like any other, and its events stay
available for ``CHAT_STREAM_RETENTION_SECONDS`` so the client can resume
(``rivya_api.chat.streams``). A client that wants to stop paying cancels the
turn explicitly (``cancel()``, from ``POST /chat/sessions/{id}/cancel``): the
task then saves the partial reply as ``incomplete`` and charges the tokens
produced so far (``chat_turn_finish(complete=False)``).

No database connection and no thread is held while the model is producing:
every database step is one short call through ``db_call``, which runs the
service in a worker thread and returns the connection before the await ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from rivya_api.chat import services, streams
from rivya_api.chat.providers.base import (
    ChatProviderError,
    ChatUsage,
    Finished,
    TextDelta,
    reply_started_hook,
    request_sent_hook,
)
from rivya_api.chat.turn_end import without_lone_surrogates
from rivya_api.common.db import db_call
from rivya_api.common.errors import error_body

logger = logging.getLogger(__name__)

DONE = "[DONE]"
# A streamed turn's commit starts at the latest this long after the turn (see ChatTurn.start).
COMMIT_GRACE_SECONDS = 0.05
# How long a turn's end waits for its events to reach Redis (ChatTurn._wait_for_mirror).
MIRROR_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class TurnEvent:
    """One server-sent event: ``id`` counts from 1 within the turn; ``data`` is JSON or ``[DONE]``."""

    id: int
    data: str

    def encode(self) -> bytes:
        return f"id: {self.id}\ndata: {self.data}\n\n".encode()


KEEPALIVE = object()  # yielded by ``follow`` after a silence of ``keepalive`` seconds


class TurnEventLog:
    """The append-only event log of one turn, with any number of live followers.

    Lives on the event loop of the process running the turn; every method is
    called from that loop.
    """

    def __init__(self) -> None:
        self.events: list[TurnEvent] = []
        self.closed = False
        self._waiters: list[asyncio.Future[bool]] = []
        # Called on every append and on close: the Redis mirror's feed (streams.MirrorFeed), if any.
        self.listener: Callable[[], None] | None = None

    def append(self, data: str) -> TurnEvent:
        event = TurnEvent(id=len(self.events) + 1, data=data)
        self.events.append(event)
        self.wake()
        if self.listener is not None:
            self.listener()
        return event

    def close(self) -> None:
        self.closed = True
        self.wake()
        if self.listener is not None:
            self.listener()

    def wake(self) -> None:
        """Wake every waiter; one that finds no new event waits on."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait_for_change(self, timeout: float | None) -> bool:
        """Wait until an event is appended or the log closes; False after ``timeout`` seconds."""
        # A bare future and one timer handle: the hot path of every follower, once per event.
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:  # timed out or cancelled: not left for the next wake
                self._waiters.remove(waiter)

    async def follow(self, *, after: int = 0, keepalive: float | None = None) -> AsyncIterator[Any]:
        """The events after id ``after``, live until the log closes, as lists of those already
        appended when the follower gets to them (one send for several, when it is behind);
        ``KEEPALIVE`` on silences."""
        position = max(0, after)
        while True:
            if position < len(self.events):
                waiting = self.events[position:]
                position += len(waiting)
                yield waiting
                continue
            if self.closed:
                return
            if not await self.wait_for_change(keepalive):
                yield KEEPALIVE


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class ChatTurn:
    """One accepted turn, run by its own task (see the module docstring)."""

    def __init__(self, plan: services.ChatTurnPlan) -> None:
        self.plan = plan
        self.log = TurnEventLog()
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: ChatUsage | None = None
        self.message: Any = None  # the saved assistant message, once the turn has ended
        self.error: ChatProviderError | None = None
        self.task: asyncio.Task[None] | None = None
        self.mirror: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.verdict: asyncio.Future[BaseException | None] | None = None  # the commit's outcome
        self.committed: asyncio.Task[None] | None = None
        self.refusal: BaseException | None = None  # why the turn's commit was refused
        self.reply_started = False  # the model accepted the request (see mark_reply_started)
        # The Idempotency-Key claim of a streamed turn: its outcome is stored when the turn ends.
        self.idempotency_record: Any = None

    # -- control -------------------------------------------------------------------

    def start(self, *, idempotency_record: Any = None, commit: bool = False) -> ChatTurn:
        """Run the turn. With ``commit``, the plan is only prepared: it is committed beside the model's request.

        The commit starts once the model has the whole request (the provider's
        ``mark_request_sent``), at its first event, or ``COMMIT_GRACE_SECONDS``
        after the start, whichever comes first: its work then does not delay
        sending the request, and the model's time to first token hides it.
        Until the commit has succeeded the turn writes nothing, is not listed
        for resuming, and nobody reads its events; a refused commit stops the
        model's request and is the turn's ``refusal`` (see ``wait_accepted``).
        """
        self.idempotency_record = idempotency_record
        self.loop = asyncio.get_running_loop()
        self.verdict = self.loop.create_future() if commit else None
        self.task = self.loop.create_task(self._run(), name=f"chat-turn-{self.plan.turn_id}")
        if self.verdict is None:
            self._accepted()
        else:
            self.loop.call_later(COMMIT_GRACE_SECONDS, self._begin_commit)
        return self

    def _begin_commit(self) -> None:
        """Start the turn's commit (once; on the loop)."""
        if self.verdict is None or self.committed is not None:
            return
        self.committed = self.loop.create_task(db_call(services.chat_turn_commit, self.plan))
        self.committed.add_done_callback(self._on_committed)

    def _on_committed(self, committed: asyncio.Task[None]) -> None:
        self.refusal = _failure(committed)
        assert self.verdict is not None
        self.verdict.set_result(self.refusal)
        if self.refusal is None:
            self._accepted()
        elif self.task is not None:
            self.task.cancel()

    def _on_reply_started(self) -> None:
        self.reply_started = True
        self.log.wake()  # the response waiting to start

    def _accepted(self) -> None:
        streams.local_turns.add(self)
        if self.idempotency_record is not None:
            renewer = self.loop.create_task(self._renew_idempotency_lease())
            self.task.add_done_callback(lambda _: renewer.cancel())
        if streams.redis_enabled():
            self.mirror = self.loop.create_task(streams.mirror_to_redis(self), name=f"chat-mirror-{self.plan.turn_id}")
            streams.ensure_cancel_listener()

    async def wait_accepted(self) -> BaseException | None:
        """Until the turn's commit has ended: None when it was accepted, else why it was refused."""
        if self.verdict is None:
            return None
        return await asyncio.shield(self.verdict)

    async def _accept_now(self) -> bool:
        """Before the turn's first write: commit it now if it has not started, and say whether it was accepted."""
        self._begin_commit()
        return await self.wait_accepted() is None

    def cancel(self) -> None:
        """Stop the turn (from any thread): it saves and charges what was produced so far."""
        if self.task is not None and not self.task.done():
            self.cancel_requested = True
            self.loop.call_soon_threadsafe(self.task.cancel)

    async def wait(self) -> None:
        """Until the turn has ended (saved and settled, or failed and released)."""
        assert self.task is not None
        await asyncio.shield(self.task)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def failed_before_output(self) -> bool:
        return self.error is not None and not self.parts

    # -- the chunks ----------------------------------------------------------------

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        plan = self.plan
        return json.dumps(
            {
                "id": plan.turn_id,
                "object": "chat.completion.chunk",
                "created": plan.created,
                "model": plan.model_id,
                "system_fingerprint": None,
                "choices": choices,
                "usage": usage,
                "session_id": plan.session_id,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def _emit_delta(self, text: str) -> None:
        # A lone surrogate would end the stream (UTF-8 refuses it) and the turn's mirror: U+FFFD here.
        text = without_lone_surrogates(text)
        if not self.parts:
            self.parts.append(text)
            delta = {"role": "assistant", "content": text}
            first = self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
            # Every later content chunk is this one with another text: keep the two
            # halves around it and encode only the text (the hot path of a stream).
            marker = json.dumps(text, ensure_ascii=False)
            head, _, tail = first.replace('"role":"assistant",', "", 1).partition('"content":' + marker)
            self._delta_head, self._delta_tail = head + '"content":', tail
            self.log.append(first)
            return
        self.parts.append(text)
        self.log.append(self._delta_head + json.dumps(text, ensure_ascii=False) + self._delta_tail)

    def _emit_finish(self, finish_reason: str) -> None:
        delta = {} if self.parts else {"role": "assistant", "content": ""}
        self.log.append(self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]))

    def usage_body(self) -> dict[str, Any]:
        usage = self.usage or ChatUsage(0, 0)
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "credits": int(getattr(self.message, "credits_charged", 0) or 0),
        }

    def completion(self) -> dict[str, Any]:
        """The turn as a ``chat.completion`` object (what a non-streaming request answers)."""
        plan = self.plan
        return {
            "id": plan.turn_id,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage_body(),
            "system_fingerprint": None,
            "session_id": plan.session_id,
        }

    def _emit_error(self, error: ChatProviderError) -> None:
        body = error_body(error.status, error.code, error.message)
        self.log.append(json.dumps(body, separators=(",", ":")))

    # -- the run -------------------------------------------------------------------

    async def _run(self) -> None:
        plan = self.plan
        request_sent_hook.set(self._begin_commit)  # this task's context only
        reply_started_hook.set(self._on_reply_started)
        try:
            finished: Finished | None = None
            async with contextlib.aclosing(plan.provider.stream(plan.request)) as events:
                async for event in events:
                    self._begin_commit()
                    if isinstance(event, TextDelta):
                        if event.text:
                            self._emit_delta(event.text)
                    elif isinstance(event, Finished):
                        finished = event
            if finished is None:
                raise ChatProviderError("The model's reply ended unexpectedly; try again.")
            self.finish_reason = finished.finish_reason
            self.usage = finished.usage or ChatUsage(
                prompt_tokens=plan.prompt_tokens,
                completion_tokens=plan.provider.count_completion_tokens(self.text),
            )
            if not await self._accept_now():
                raise asyncio.CancelledError  # refused: the turn ends here, writing nothing
            self._emit_finish(finished.finish_reason)
            self.message = await db_call(
                services.chat_turn_finish,
                turn_id=plan.turn_id,
                model_id=plan.model_id,
                content=self.text,
                finish_reason=finished.finish_reason,
                usage=self.usage,
                funds_hint_entry=plan.funds_hint_entry,
            )
            self.log.append(self._chunk([], self.usage_body()))
            self.log.append(DONE)
        except asyncio.CancelledError:
            await self._stop_early()
        except ChatProviderError as exc:
            await self._fail(exc)
        except Exception:
            logger.exception("Chat turn %s failed", plan.turn_id)
            await self._fail(
                ChatProviderError(
                    "An internal error ended the turn. Quote the request id if you contact support.",
                    code="internal_error",
                    status=500,
                )
            )
        finally:
            if self.refusal is None and self.idempotency_record is not None:
                await self._store_outcome()
            self.log.close()
            if self.refusal is None:
                streams.local_turns.ended(self)
            await self._wait_for_mirror()

    async def _wait_for_mirror(self) -> None:
        """Until the turn's events are in Redis (or ``MIRROR_DRAIN_SECONDS``): the turn has ended only then.

        A loop that closes right after the turn (a non-streaming turn under ``async_to_sync``, a
        worker's shutdown) would otherwise cancel the mirror before its last events are written,
        and a follower in another process would end the turn as interrupted. ``asyncio.wait``
        neither cancels the mirror on the timeout nor when this task is cancelled.
        """
        if self.mirror is not None and not self.mirror.done():
            await asyncio.wait({self.mirror}, timeout=MIRROR_DRAIN_SECONDS)

    async def _store_outcome(self) -> None:
        """Store the turn's outcome under its Idempotency-Key, for retries to replay."""
        from rivya_api.idempotency.services import idempotency_complete

        if self.error is not None:
            status = self.error.status
            body = error_body(status, self.error.code, self.error.message)
        else:
            status, body = 200, self.completion()
        headers = {"Content-Type": "application/json", "Rivya-Session-Id": self.plan.session_id}
        try:
            await db_call(
                idempotency_complete,
                record=self.idempotency_record,
                status_code=status,
                headers=headers,
                body=json.dumps(body).encode(),
            )
        except Exception:
            logger.exception("Could not store the outcome of chat turn %s for its Idempotency-Key", self.plan.turn_id)

    async def _renew_idempotency_lease(self) -> None:
        from rivya_api.idempotency.services import idempotency_renew

        while True:
            await asyncio.sleep(60)
            if not await db_call(idempotency_renew, record=self.idempotency_record):
                return

    async def _stop_early(self) -> None:
        """Save what was produced as an incomplete reply and charge for it."""
        plan = self.plan
        if not await self._accept_now():
            return  # the turn was never accepted: nothing to save or charge
        self.usage = ChatUsage(
            prompt_tokens=plan.prompt_tokens,
            completion_tokens=plan.provider.count_completion_tokens(self.text),
        )
        try:
            self.message = await db_call(
                services.chat_turn_finish,
                turn_id=plan.turn_id,
                model_id=plan.model_id,
                content=self.text,
                finish_reason="",
                usage=self.usage,
                complete=False,
            )
        except Exception:
            logger.exception("Could not save the stopped chat turn %s; its hold will expire", plan.turn_id)
            return
        # Whoever follows the turn (a resumed stream) gets its usage and a clean end.
        self.log.append(self._chunk([], self.usage_body()))
        self.log.append(DONE)

    async def _fail(self, error: ChatProviderError) -> None:
        self.error = error
        if not await self._accept_now():
            return
        try:
            self.message = await db_call(
                services.chat_turn_fail, turn_id=self.plan.turn_id, content=self.text, error_code=error.code
            )
        except Exception:
            logger.exception("Could not release the failed chat turn %s; its hold will expire", self.plan.turn_id)
        self._emit_error(error)


def _failure(task: asyncio.Task[Any]) -> BaseException | None:
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception()


def replay_events(completion: dict[str, Any]) -> list[TurnEvent]:
    """The events of a stream that would have carried ``completion`` (an Idempotency-Key replay).

    The whole reply comes in one content chunk; the finish, usage and ``[DONE]``
    events follow as in a live stream.
    """
    base = {key: completion[key] for key in ("id", "created", "model", "system_fingerprint", "session_id")}
    base["object"] = "chat.completion.chunk"
    choice = completion["choices"][0]
    content = choice["message"]["content"] or ""
    chunks = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
            "usage": None,
        },
    ]
    if choice.get("finish_reason"):
        chunks.append(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}],
                "usage": None,
            }
        )
    chunks.append({**base, "choices": [], "usage": completion["usage"]})
    data = [json.dumps(chunk, ensure_ascii=False, separators=(",", ":")) for chunk in chunks] + [DONE]
    return [TurnEvent(id=index, data=item) for index, item in enumerate(data, start=1)]
