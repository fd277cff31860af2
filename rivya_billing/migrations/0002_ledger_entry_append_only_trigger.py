"""On PostgreSQL, refuse UPDATE and DELETE of posted ledger entries in the database itself.

The ORM already refuses (``LedgerEntry.save``/``delete`` and its queryset), but
raw SQL, a shell or another service talking to the same database would not go
through the ORM. A row trigger raising an exception stops them all. TRUNCATE is
deliberately left alone: it is how test runners and operators empty a database,
not a way to edit history one row at a time.

Other databases (SQLite in the embedded default) have no such trigger; there
the ORM guard and the reconciliation command (``rivya_ledger_check``) remain.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION rivya_billing_ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'rivya_billing: ledger entries are append-only (% of entry % refused)', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Post a correcting entry (refund or adjust) instead.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER rivya_billing_ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON rivya_billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION rivya_billing_ledger_entry_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS rivya_billing_ledger_entry_append_only ON rivya_billing_ledgerentry;
DROP FUNCTION IF EXISTS rivya_billing_ledger_entry_append_only();
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0001_ledger")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
