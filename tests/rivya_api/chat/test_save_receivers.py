"""A host's receivers of ``pre_save``/``post_save`` hear a chat turn's saves on every path.

The plain path saves the new session, the hold and the reply with ``save()`` (each sends both
signals); the fast paths (``pg_commit``, ``pg_finish``, ``pg_reserve`` on PostgreSQL;
``sqlite_commit``, ``sqlite_finish``, ``sqlite_holds`` on SQLite) write those rows by their own
statements, which send neither, so while a receiver is connected they give way to the plain path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models.signals import post_save, pre_save

from rivya_api.chat import pg_commit, pg_finish, sqlite_commit, sqlite_finish
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_billing import services as billing
from rivya_billing.models import Hold
from rivya_billing.services import pg_reserve, sqlite_holds
from tests.rivya_api.chat.test_pg_commit import _models, commit, finish, prepare  # noqa: F401 (_models: autouse)

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {
    "RIVYA_API": ("CHAT_TURN_COMMIT_SQL", "CHAT_TURN_FINISH_SQL", "CHAT_TURN_COMMIT_SQLITE", "CHAT_TURN_FINISH_SQLITE"),
    "RIVYA_BILLING": ("PG_RESERVE", "SQLITE_HOLDS"),
}


def use_fast(settings: Any, on: bool) -> None:
    for name, switches in FAST.items():
        setattr(settings, name, {**getattr(settings, name, {}), **dict.fromkeys(switches, on)})


@pytest.fixture
def heard() -> Iterator[list[tuple[str, str, bool]]]:
    """What the receivers heard: (signal, model, created)."""
    calls: list[tuple[str, str, bool]] = []

    def pre(sender: Any, instance: Any, **kwargs: Any) -> None:
        calls.append(("pre_save", sender.__name__, instance._state.adding))

    def post(sender: Any, created: bool, **kwargs: Any) -> None:
        calls.append(("post_save", sender.__name__, created))

    for model in (ChatSession, ChatMessage, Hold):
        pre_save.connect(pre, sender=model, weak=False)
        post_save.connect(post, sender=model, weak=False)
    yield calls
    for model in (ChatSession, ChatMessage, Hold):
        pre_save.disconnect(pre, sender=model)
        post_save.disconnect(post, sender=model)


def test_every_fast_path_gives_way_while_a_receiver_listens(heard, settings):
    use_fast(settings, True)
    assert not any(path() for path in (pg_commit.enabled, pg_finish.enabled, pg_reserve.enabled))
    assert not any(path() for path in (sqlite_commit.enabled, sqlite_finish.enabled, sqlite_holds.reserves))


def test_without_a_receiver_the_fast_paths_of_this_database_are_taken(settings):
    use_fast(settings, True)
    postgresql = (pg_commit.enabled(), pg_finish.enabled(), pg_reserve.enabled())
    sqlite = (sqlite_commit.enabled(), sqlite_finish.enabled(), sqlite_holds.reserves())
    from django.db import connection

    assert (all(postgresql), all(sqlite)) == (connection.vendor == "postgresql", connection.vendor == "sqlite")


def test_a_turn_sends_the_plain_paths_saves_with_the_fast_paths_on(heard, make_account, settings):
    sent = {}
    for on in (False, True):
        use_fast(settings, on)
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        heard.clear()
        plan = prepare(account, "Hello")
        assert commit(plan) == "accepted"
        finish(plan)
        sent[on] = list(heard)
    assert sent[True] == sent[False]
    assert ("post_save", "ChatSession", True) in sent[True]
    assert ("post_save", "Hold", True) in sent[True]
    assert ("post_save", "ChatMessage", False) in sent[True]
