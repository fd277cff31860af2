"""``durability.on_commit_first`` writes into Django's private ``run_on_commit`` list: checked on every database.

If a Django upgrade changes what ``transaction.on_commit`` stores, or how it runs and
drops the entries, these fail before early lock release can misbehave.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from rivya_billing.services.durability import on_commit_first

pytestmark = pytest.mark.django_db(transaction=True)


def add_then_fail(func) -> None:
    with transaction.atomic():
        on_commit_first(func)
        raise RuntimeError


def test_the_entry_has_the_shape_transaction_on_commit_gives_it():
    def first() -> None:
        pass

    def django() -> None:
        pass

    with transaction.atomic(), transaction.atomic():  # inside a savepoint: its id is part of the entry
        transaction.on_commit(django)
        on_commit_first(first)
        ours, djangos = connection.run_on_commit[0], connection.run_on_commit[-1]
        assert ours[1] is first
        assert djangos[1] is django
        assert [type(part) for part in ours] == [type(part) for part in djangos]
        assert ours[0] == djangos[0]
        assert ours[0]  # the savepoint's id
        assert ours[2] is djangos[2] is False  # not robust


def test_it_runs_before_the_callbacks_added_earlier_and_goes_with_a_rolled_back_savepoint():
    ran: list[str] = []
    with transaction.atomic():
        transaction.on_commit(lambda: ran.append("earlier"))
        on_commit_first(lambda: ran.append("first"))
        with pytest.raises(RuntimeError):
            add_then_fail(lambda: ran.append("rolled back"))
        transaction.on_commit(lambda: ran.append("later"))
        assert ran == []
    assert ran == ["first", "earlier", "later"]


def test_nothing_runs_when_the_transaction_rolls_back():
    ran: list[str] = []
    with pytest.raises(RuntimeError):
        add_then_fail(lambda: ran.append("first"))
    assert ran == []
