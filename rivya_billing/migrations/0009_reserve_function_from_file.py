"""The reservation function now comes from ``rivya_billing/services/pg_reserve.sql``.

The SQL is 0007's: this migration only hands it to the file, which
``services/pg_reserve.py`` and its tests own from now on. 0004 and 0007 keep their
own copies, frozen: migrating to either still installs exactly the function that
matched the tables at that point, so history replays as it was.

A later change of the function edits the file and adds a migration like this one,
with the file's new SHA-256 (``tests/rivya_billing/test_pg_reserve.py`` fails until
the newest such migration names the file's hash; a new signature also needs a DROP
of the old one). This migration then installs the newer text on a fresh database
too, before the migrations that change the tables: harmless, because PL/pgSQL
resolves tables and columns when the function first runs, and no migration runs it.
"""

from importlib import import_module
from pathlib import Path

from django.db import migrations

SQL_FILE = Path(__file__).resolve().parent.parent / "services" / "pg_reserve.sql"
RESERVE_SQL_SHA256 = "63c1ab48802dd80c7dd9007512962ba2f472e8d0d0e47fdbcd33ede89056b87f"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL_FILE.read_text(), params=None)


def uninstall(apps, schema_editor):
    # Back to 0007's text (the same function as long as the file has not changed since).
    import_module("rivya_billing.migrations.0007_spend_limits").install(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0008_expiring_grants")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
