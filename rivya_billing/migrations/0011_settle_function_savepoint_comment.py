"""``pg_settle.sql``'s header comment now says why Python calls the function in a savepoint.

The function itself (its body and signature) is 0010's: this loads the file again only
so that the newest migration that loads it names its SHA-256, as 0009 and 0010 require
of every edit of the file. Reversing it leaves the function as it is (the same one).
"""

from pathlib import Path

from django.db import migrations

SQL_FILE = Path(__file__).resolve().parent.parent / "services" / "pg_settle.sql"
SETTLE_SQL_SHA256 = "9cf9783f4b6220b61f0757c31bd9fb107c9632cfc7a10398c724ae3f25ebc8c6"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL_FILE.read_text(), params=None)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0010_settle_function")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop, elidable=False)]
