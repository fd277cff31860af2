"""``rivya_billing_reserve`` no longer keeps a spend limit's count when the account has no wallet.

Through a limit, the function counted the amount and then found no wallet to hold it on: it
returned no hold, and outside a transaction the count committed without one (the public
``credits_reserve`` then refused, with the limit's ``used`` raised). It now fails as a want of
credits does, so nothing is written. Same signature: this loads ``pg_reserve.sql`` again and names
its SHA-256, as 0009 asks of every edit of the file. Reversing it leaves the function as it is.
"""

from pathlib import Path

from django.db import migrations

SQL_FILE = Path(__file__).resolve().parent.parent / "services" / "pg_reserve.sql"
RESERVE_SQL_SHA256 = "f964467e15eaa478e75467efe78352296fb88e08348079a3d5767fc1276768ab"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SQL_FILE.read_text(), params=None)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0011_settle_function_savepoint_comment")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop, elidable=False)]
