"""Serializer fields copied once per thread (``rivya_api.common.reused_fields``) against DRF's copy per instance.

The chat request's serializer validates a corpus of bodies, valid and not, with the switch on and
off in one interleaved sequence (so a state left behind by one validation would show in the
next): the same validated data, or the same errors with the same codes, every time.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rest_framework.exceptions import ErrorDetail

from rivya_api.chat.serializers import ChatCompletionInputSerializer
from rivya_api.credits.serializers import CreditsOutputSerializer

USER = {"role": "user", "content": "Hello"}
BODIES: list[Any] = [
    {"model": "rivya-chat", "messages": [USER]},
    {"model": "rivya-chat", "messages": [USER], "unknown": 1},
    {
        "model": "rivya-chat",
        "messages": [{"role": "system", "content": "Be brief."}, USER, {"role": "assistant", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 10,
        "temperature": 0.5,
        "top_p": 1,
        "stop": ["\n"],
        "seed": 3,
        "metadata": {"a": "b"},
        "session_id": "chat_x",
        "user": "u",
        "n": 1,
    },
    {"model": "rivya-chat", "messages": []},
    {"model": 5, "messages": [USER]},
    {"model": "rivya-chat", "messages": [USER, {"role": "wizard", "content": "x"}]},
    {"model": "rivya-chat", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
    {"model": "rivya-chat", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    {"model": "rivya-chat", "messages": [{"role": "assistant", "content": [{"type": "file", "file_id": "file_1"}]}]},
    {"model": "rivya-chat", "messages": [USER], "n": 2},
    {"model": "rivya-chat", "messages": [USER], "max_tokens": 5, "max_completion_tokens": 6},
    {"model": "rivya-chat", "messages": [USER], "metadata": {str(i): "v" for i in range(20)}},
    {"model": "rivya-chat", "messages": [USER], "temperature": 3},
    {"model": "rivya-chat", "messages": [USER], "stream_options": {"include_usage": "yes"}},
    {"model": "rivya-chat", "messages": [USER], "tools": []},
    {"model": "rivya-chat", "messages": [{"role": "user", "content": "x", "tool_calls": []}]},
    {"messages": [USER]},
    [],
]


def plain(value: Any) -> Any:
    """Errors and data as comparable values: an ErrorDetail keeps its code."""
    if isinstance(value, ErrorDetail):
        return (str(value), value.code)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def validated(body: Any) -> tuple[bool, Any]:
    serializer = ChatCompletionInputSerializer(data=body)
    ok = serializer.is_valid()
    return ok, plain(dict(serializer.validated_data) if ok else serializer.errors)


def test_the_reused_fields_validate_every_body_as_the_copied_ones(rivya_settings: Any) -> None:
    outcomes: dict[bool, list] = {True: [], False: []}
    for _ in range(2):  # the second round runs on fields that validated everything once
        for body in BODIES:
            for reused in (True, False):
                rivya_settings("RIVYA_API", SERIALIZER_FIELDS_REUSED=reused)
                outcomes[reused].append(validated(body))
    assert outcomes[True] == outcomes[False]
    assert [ok for ok, _ in outcomes[True][: len(BODIES)]].count(True) == 3  # the corpus is mostly refusals


@pytest.mark.parametrize("reused", [True, False])
def test_fields_are_copied_once_per_thread_only_when_switched_on(rivya_settings: Any, reused: bool) -> None:
    rivya_settings("RIVYA_API", SERIALIZER_FIELDS_REUSED=reused)
    first, second = ChatCompletionInputSerializer(data={}), ChatCompletionInputSerializer(data={})
    same = first.fields["model"] is second.fields["model"]
    assert same is reused
    # Bound to the newest instance, as a fresh copy would be.
    assert second.fields["model"].parent is second
    assert second.fields["messages"].root is second

    elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: elsewhere.append(ChatCompletionInputSerializer(data={}).fields["model"]))
    thread.start()
    thread.join()
    assert elsewhere[0] is not second.fields["model"]  # another thread has its own copy


def test_the_credits_body_renders_the_same_with_reused_fields(rivya_settings: Any) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    activity = {"since": at, "days": 30, "granted": 5, "reserved": 3, "charged": 2, "released": 1, "expired": 0}
    activity.update(refunded=0, adjusted=0)
    bodies = [
        {"balance": 10, "held": 3, "available": 7, "unit": "credit", "updated_at": at, "activity": activity,
         "expiring": [{"credits": 4, "expires_at": at}]},
        {"balance": 0, "held": 0, "available": 0, "unit": "credit", "updated_at": None, "activity": activity,
         "expiring": []},
    ]  # fmt: skip
    rendered: dict[bool, list] = {True: [], False: []}
    for body in bodies * 2:
        for reused in (True, False):
            rivya_settings("RIVYA_API", SERIALIZER_FIELDS_REUSED=reused)
            rendered[reused].append(CreditsOutputSerializer(body).data)
    assert rendered[True] == rendered[False]
    assert rendered[True][0]["expiring"] == [{"credits": 4, "expires_at": "2026-01-02T03:04:05Z"}]
