"""``rivya_core.rows.instance_from_row``: what the ORM would load, from a hand-written statement's row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from rivya_api.generations.models import GenerationTask
from rivya_core.rows import instance_from_row


def raw_row(model: Any, pk: Any) -> tuple[Any, ...]:
    """The model's concrete columns in field order, read without the ORM (as a RETURNING gives them)."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in model._meta.concrete_fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s", [pk]
        )
        return cursor.fetchone()


@pytest.mark.django_db
def test_the_instance_is_what_the_orm_loads(make_account):
    account = make_account()
    task = GenerationTask.objects.create(
        account=account,
        model="m",
        kind="image",
        input={"prompt": "a fox", "n": [1, 2.5, None]},
        metadata={"k": "v"},
        price=3,
        queued_at=datetime(2026, 12, 7, 6, 0, tzinfo=UTC),
        expires_at=datetime(2026, 12, 8, 6, 0, tzinfo=UTC),
    )
    for model, pk in ((GenerationTask, task.pk), (type(account), account.pk)):
        built, loaded = instance_from_row(model, raw_row(model, pk)), model.objects.get(pk=pk)
        fields = model._meta.concrete_fields
        assert {f.attname: getattr(built, f.attname) for f in fields} == {
            f.attname: getattr(loaded, f.attname) for f in fields
        }
        assert type(built) is model
        assert (built._state.adding, built._state.db) == (False, loaded._state.db)
    assert instance_from_row(GenerationTask, raw_row(GenerationTask, task.pk)).input == task.input  # decoded JSON


def test_a_row_of_another_length_is_refused():
    with pytest.raises(ValueError, match="zip"):
        instance_from_row(GenerationTask, (1, 2))


class Prefixed(models.CharField):
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else f"id-{value}"


@isolate_apps("tests")
def test_a_foreign_key_gets_its_target_fields_conversion_as_the_orm_gives_it():
    class Owner(models.Model):
        key = Prefixed(primary_key=True, max_length=20)

        class Meta:
            app_label = "tests"

    class Thing(models.Model):
        owner = models.ForeignKey(Owner, on_delete=models.CASCADE)

        class Meta:
            app_label = "tests"

    raw = (1, "abc")
    compiler = Thing.objects.none().query.get_compiler(connection.alias)
    columns = [field.get_col(Thing._meta.db_table) for field in Thing._meta.concrete_fields]
    loaded = next(iter(compiler.apply_converters([raw], compiler.get_converters(columns))))
    assert instance_from_row(Thing, raw).owner_id == loaded[1] == "id-abc"


@pytest.mark.django_db(transaction=True)
def test_the_converters_are_worked_out_once_per_connection(make_account):
    """Each thread's connection gets its own (the backend's converters are bound to it), once."""
    import gc
    import threading
    import weakref

    from django.db import connections

    from rivya_core import rows

    account = make_account()
    row = raw_row(type(account), account.pk)
    built: list[Any] = []

    def load() -> None:
        try:
            built.append(instance_from_row(type(account), row))
            built.append(connections["default"])
        finally:
            connections.close_all()

    def cached(wrapper: Any) -> Any:
        return wrapper.__dict__[rows._CACHE_ATTRIBUTE][type(account)]

    instance_from_row(type(account), row)
    first = cached(connections["default"])
    instance_from_row(type(account), row)
    assert cached(connections["default"]) is first  # not worked out again
    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    assert built[0].pk == account.pk
    assert built[1] is not connections["default"]
    assert cached(built[1]) is not first
    # The cache goes with its connection: the ended thread's wrapper is collected (its converters
    # are bound to the wrapper's ops, so a table keyed on the wrapper elsewhere kept it alive).
    ended = weakref.ref(built.pop())
    gc.collect()
    assert ended() is None
