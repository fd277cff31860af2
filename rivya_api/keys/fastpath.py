"""The key lookup, compiled once per thread: a fast path through the ORM's compiler.

Compiling the ORM query took twice as long as running it (about 0.6 of 1 ms per
request on SQLite), on every request that reads a key from the database. The SQL,
its column layout and converters come from the ORM's own compiler, and the rows
become instances the way ``QuerySet`` iteration makes them; what this reaches into
(``get_compiler``, ``klass_info``, ``get_related_populators``, ``results_iter``) is
Django's, not public, so ``tests/rivya_api/keys/test_keystore.py`` compares it with
the plain ORM query on every database. ``RIVYA_API["KEY_LOOKUP_COMPILED"] = False``
switches it off (``keystore`` then runs the ORM query).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models.query import get_related_populators

from rivya_api.keys.models import APIKey


@dataclass(frozen=True)
class _CompiledLookup:
    """The key-by-hash query, compiled once per thread and database."""

    compiler: Any  # its connection is the thread's, for the database it was compiled for
    sql: str
    fields: slice  # the key's columns in a row
    init_list: list[str]
    populators: list[Any]  # select_related("account")

    @classmethod
    def compile(cls, alias: str) -> _CompiledLookup:
        marker = "rivya-key-hash-placeholder"
        query = APIKey.objects.using(alias).select_related("account").filter(key_hash=marker).query
        compiler = query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        if list(params) != [marker]:
            raise RuntimeError(f"Unexpected parameters of the key lookup: {params!r}")
        select_fields = compiler.klass_info["select_fields"]
        fields = slice(select_fields[0], select_fields[-1] + 1)
        return cls(
            compiler=compiler,
            sql=sql,
            fields=fields,
            init_list=[column[0].target.attname for column in compiler.select[fields]],
            populators=get_related_populators(compiler.klass_info, compiler.select, alias),
        )

    def fetch(self, alias: str, key_hash: str) -> APIKey | None:
        with self.compiler.connection.cursor() as cursor:
            cursor.execute(self.sql, [key_hash])
            rows = cursor.fetchmany(1)
        for row in self.compiler.results_iter(results=[rows]):
            key = APIKey.from_db(alias, self.init_list, row[self.fields])
            for populator in self.populators:
                populator.populate(row, key)
            return key
        return None


_compiled = threading.local()


def key_load(key_hash: str) -> APIKey | None:
    """The key whose secret hashes to ``key_hash``, with its account, from the database; or None."""
    alias = router.db_for_read(APIKey)
    lookups = _compiled.__dict__.setdefault("by_alias", {})
    lookup = lookups.get(alias)
    if lookup is None or lookup.compiler.connection is not connections[alias]:
        lookup = lookups[alias] = _CompiledLookup.compile(alias)
    return lookup.fetch(alias, key_hash)
