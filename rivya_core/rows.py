"""Model instances from the column values of a hand-written statement (``UPDATE … RETURNING``).

The fast paths that replace an ORM read and write by one statement (``rivya_api``'s
``generations/pg_claim``, ``rivya_billing``'s ``services/pg_renew``) get the row back as plain
column values; ``instance_from_row`` makes of them what the ORM's own read would have loaded.
Here because both apps need it and ``rivya_billing`` must not import ``rivya_api``. ``in_one_table``
says whether a model's row is one table's (the fast paths that join an account model need it);
``saves_heard`` whether a receiver listens to a model's saves (the fast paths that write without
``save()`` send no ``pre_save``/``post_save``, so they take the plain path while one does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, connections
from django.db.models.signals import post_save, pre_save

# Per connection (each thread has its own), per model: the attnames, and each column with its
# converters. Worked out once: doing it for every row was about 70 µs a row (three rows a generation).
# Kept on the connection's wrapper itself: the converters are bound to its ``ops``, which refers
# back to the wrapper, so a table keyed on the wrapper outside it would keep every wrapper alive.
_CACHE_ATTRIBUTE = "_rivya_rows_loading"


def instance_from_row(model: Any, values: Sequence[Any]) -> Any:
    """The ``model`` instance the ORM would load from these values of its concrete fields, in their
    order: the backend's converters, then the column's (``from_db_value``: a JSON field's decoding;
    a foreign key's target field's too), as the ORM's compiler applies them (PostgreSQL has none of
    the backend's), then ``from_db`` on the default connection (the one the statement ran on)."""
    attnames, columns = _columns(model)
    loaded = []
    for (column, converters), value in zip(columns, values, strict=True):
        for converter in converters:
            value = converter(value, column, connection)
        loaded.append(value)
    return model.from_db(connection.alias, attnames, loaded)


def _columns(model: Any) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    """``model``'s attnames and its columns with their converters, on this thread's connection."""
    wrapper = connections[connection.alias]
    by_model = wrapper.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    found = by_model.get(model)
    if found is None:
        fields = model._meta.concrete_fields
        columns = [field.get_col(model._meta.db_table) for field in fields]
        converters = [[*wrapper.ops.get_db_converters(c), *c.get_db_converters(wrapper)] for c in columns]
        found = by_model[model] = ([field.attname for field in fields], list(zip(columns, converters, strict=True)))
    return found


def insert_fields(model: Any) -> list[Any]:
    """The fields an ORM INSERT of ``model`` writes: every concrete field but the auto primary key."""
    meta = model._meta
    return [field for field in meta.concrete_fields if field is not meta.auto_field]


def mark_inserted(instance: Any, pk: Any) -> None:
    """``instance`` as after the ORM's INSERT on the default connection: its primary key, saved."""
    instance.pk = pk
    instance._state.adding, instance._state.db = False, connection.alias


def in_one_table(model: Any) -> bool:
    """Whether all of ``model``'s columns are in its own table: not so for a model that inherits
    from a concrete one (multi-table inheritance; the parents' columns are in their tables), which
    a fast path's hand-written join does not reach, so such an account model takes the plain path."""
    meta = model._meta.concrete_model._meta
    return meta.concrete_fields == meta.local_concrete_fields


def saves_heard(model: Any) -> bool:
    """Whether a receiver (a host's) is connected to ``model``'s ``pre_save`` or ``post_save``: the plain path
    saves that model's rows with ``save()``, which sends both, and a fast path writing them by its own
    statement sends neither, so it gives way to the plain path while one listens."""
    return pre_save.has_listeners(model) or post_save.has_listeners(model)
