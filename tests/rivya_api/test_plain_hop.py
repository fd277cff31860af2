"""``db_call``'s plain hand-off (``rivya_api.common.plain_hop``) against asgiref's ``sync_to_async``.

Each test runs the same calls with ``DB_CALL_PLAIN_HOP`` on and off: what the call sees of its caller
(context variables, asgiref ``Local`` storage, the loop for ``async_to_sync``), what the caller sees
after it, errors, cancellation, and which way the call went.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest
from asgiref.local import Local
from asgiref.sync import SyncToAsync, async_to_sync

from rivya_api.common.db import db_call

pytestmark = pytest.mark.parametrize("plain", [True, False])

variable: contextvars.ContextVar[str] = contextvars.ContextVar("test_plain_hop", default="unset")
shared = Local()  # as Django's caches and translations: not thread-critical


@pytest.fixture(autouse=True)
def _switch(rivya_settings: Any, plain: bool) -> None:
    rivya_settings("RIVYA_API", DB_CALL_PLAIN_HOP=plain)


def counted_asgiref_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = SyncToAsync.__call__

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return calls


def test_the_call_sees_its_callers_context_and_the_caller_sees_what_it_set(plain, monkeypatch):
    asgiref_calls = counted_asgiref_calls(monkeypatch)

    def in_thread() -> tuple[str, str, int]:
        seen = (variable.get(), shared.value)
        variable.set("set in the call")
        shared.value = "set in the call too"
        return (*seen, threading.get_ident())

    async def caller() -> tuple[Any, ...]:
        variable.set("the caller's")
        shared.value = "the caller's Local"
        seen = await db_call(in_thread)
        return (*seen, threading.get_ident(), variable.get(), shared.value)

    seen_var, seen_local, call_thread, loop_thread, after_var, after_local = asyncio.run(caller())
    assert (seen_var, seen_local) == ("the caller's", "the caller's Local")
    assert call_thread != loop_thread
    assert (after_var, after_local) == ("set in the call", "set in the call too")
    assert len(asgiref_calls) == (0 if plain else 1)


def test_async_to_sync_inside_the_call_runs_on_the_callers_loop(plain):
    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def caller() -> bool:
        return await db_call(async_to_sync(where)) is asyncio.get_running_loop()

    assert asyncio.run(caller())


def test_an_error_of_the_call_is_raised_to_the_caller(plain):
    def fails() -> None:
        raise LookupError("no such thing")

    async def caller() -> None:
        await db_call(fails)

    with pytest.raises(LookupError, match="no such thing"):
        asyncio.run(caller())


def test_inside_an_except_block_the_call_goes_through_asgiref_and_chains_to_it(plain, monkeypatch):
    asgiref_calls = counted_asgiref_calls(monkeypatch)

    def context_of_error() -> Any:
        try:
            raise KeyError("in the call")
        except KeyError as exc:
            return exc.__context__

    async def caller() -> Any:
        try:
            raise ValueError("the caller's")
        except ValueError:
            return await db_call(context_of_error)

    assert isinstance(asyncio.run(caller()), ValueError)
    assert len(asgiref_calls) == 1


def test_a_cancelled_caller_stops_waiting_and_the_call_runs_to_its_end(plain):
    ended = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        ended.set()

    async def caller() -> float:
        task = asyncio.create_task(db_call(slow))
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - began

    assert asyncio.run(caller()) < 0.1
    assert ended.wait(2)
