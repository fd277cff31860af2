"""On PostgreSQL, settling a hold becomes one call of a PL/pgSQL function (``services/pg_settle``).

The function comes from ``rivya_billing/services/pg_settle.sql``, as the reservation's
comes from ``pg_reserve.sql`` (see 0009 for how a change of the file is made: edit it
and add a migration like this one with the file's new SHA-256;
``tests/rivya_billing/test_pg_settle.py`` fails until the newest such migration names
the file's hash; a new signature also needs a DROP of the old one). It writes nothing
the settle did not write before: no table changes here.
"""

from pathlib import Path

from django.db import migrations

SQL_FILE = Path(__file__).resolve().parent.parent / "services" / "pg_settle.sql"
SETTLE_SQL_SHA256 = "d66ebbf6befc1902dafd51ccf93eba02b5bb6bffdd1dec8a6fcd7e99bb0ed43c"

REVERSE = """
DROP FUNCTION IF EXISTS rivya_billing_settle(
    bigint, text, bigint, text, bigint, timestamptz, boolean, text, text[]
);
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL_FILE.read_text(), params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0009_reserve_function_from_file")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
