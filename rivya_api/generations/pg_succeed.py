"""The PostgreSQL fast path of a generation's success: its outputs' rows, the task's success and
the outputs' links in one statement.

The plain path (``finishing._succeed_in_transaction``) sends three statements, each an ORM query
compiled on every job: ``File.objects.bulk_create`` of the outputs, the conditional UPDATE of
``_mark_succeeded`` (the task still running under this run's claim, its cancel not asked, its
sequence where the claim left it) and the ``bulk_create`` of the task's links to its outputs
(``_succeed_locked``). Here one statement, built once per number of outputs, makes the same
changes in the same transaction (up to ``MAX_OUTPUTS`` outputs; more take the plain path): the
files' ``INSERT`` (always, as the plain path inserts them before the UPDATE), the same
conditional ``UPDATE`` and, only when it matched, the links. When it
matched no row the caller goes on as the plain path does after a refused mark: the locking read
decides, and links the outputs itself if the run still owns the task. The files' values go
through each field's ``pre_save`` and ``get_db_prep_save``, as in ``bulk_create``; the
instances get their primary keys, as after it.

``RIVYA_API["GENERATION_SUCCEED_SQL"] = False`` switches it off (SQLite always takes the plain
path); ``tests/rivya_api/generations/test_pg_succeed.py`` compares the two paths.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from rivya_api.conf import api_settings
from rivya_api.files.models import File
from rivya_api.generations.models import GenerationTask
from rivya_core.rows import insert_fields, mark_inserted

Status = GenerationTask.Status


# Above this many outputs the plain path: one statement is built and kept per output count, and
# a provider decides the count (a job makes one to a few).
MAX_OUTPUTS = 16


def enabled(outputs: int) -> bool:
    """Whether a success with this many outputs takes the fast path."""
    return connection.vendor == "postgresql" and bool(api_settings.GENERATION_SUCCEED_SQL) and outputs <= MAX_OUTPUTS


def insert_and_mark(task: GenerationTask, files: list[File], completed_at: datetime) -> bool:
    """Insert ``files``' rows and, if ``task`` is still running under its run's claim (as
    ``_mark_succeeded``), write its success and link the files; True when the task was marked."""
    fields = insert_fields(File)
    params: list[Any] = []
    for file in files:
        params += [field.get_db_prep_save(field.pre_save(file, True), connection) for field in fields]
    hold_token, attempts = task.hold_token, task.attempts
    params += [Status.SUCCEEDED, task.price, completed_at, task.error_code, task.error_message]
    params += [task.event_sequence + 1, task.pk, Status.RUNNING, hold_token, attempts, task.event_sequence]
    with connection.cursor() as cursor:
        cursor.execute(_statement(len(files)), params)
        marked, public_ids, pks = cursor.fetchone()
    by_public_id = dict(zip(public_ids or [], pks or [], strict=True))
    for file in files:
        mark_inserted(file, by_public_id[file.public_id])
    return bool(marked)


@cache
def _statement(count: int) -> str:
    quote = connection.ops.quote_name
    meta, file_meta = GenerationTask._meta, File._meta
    through = GenerationTask.outputs.through._meta
    task_column, file_column = (quote(through.get_field(name).column) for name in ("generationtask", "file"))

    def t(name: str) -> str:
        return quote(meta.get_field(name).column)

    row = "(" + ", ".join("%s" for _ in insert_fields(File)) + ")"
    file_pk, public_id = quote(file_meta.pk.column), quote(file_meta.get_field("public_id").column)
    files = (
        f"f AS (INSERT INTO {quote(file_meta.db_table)} ({', '.join(quote(f.column) for f in insert_fields(File))})"
        f" VALUES {', '.join([row] * count)} RETURNING {file_pk}, {public_id}), "
        if count
        else f"f AS (SELECT NULL::bigint AS {file_pk}, NULL::text AS {public_id} WHERE false), "
    )
    return (
        f"WITH {files}"
        f"t AS (UPDATE {quote(meta.db_table)} SET {t('status')} = %s, {t('charged')} = %s, {t('refunded')} = 0,"
        f" {t('completed_at')} = %s, {t('progress')} = 100, {t('error_code')} = %s, {t('error_message')} = %s,"
        f" {t('event_sequence')} = %s"
        f" WHERE {quote(meta.pk.column)} = %s AND {t('status')} = %s AND {t('hold_token')} IS NOT DISTINCT FROM %s"
        f" AND {t('attempts')} = %s AND NOT {t('cancel_requested')} AND {t('event_sequence')} = %s"
        f" RETURNING {quote(meta.pk.column)}), "
        f"o AS (INSERT INTO {quote(through.db_table)} ({task_column}, {file_column})"
        f" SELECT t.{quote(meta.pk.column)}, f.{file_pk} FROM t, f ORDER BY f.{file_pk})"
        f" SELECT EXISTS (SELECT 1 FROM t), a.p, a.i FROM (SELECT array_agg(f.{public_id} ORDER BY f.{file_pk}) AS p,"
        f" array_agg(f.{file_pk} ORDER BY f.{file_pk}) AS i FROM f) AS a"
    )
