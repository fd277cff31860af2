"""On PostgreSQL, make the database itself refuse edits of history.

- UPDATE or DELETE of a posted ledger entry is refused (the ORM refuses too, through
  ``LedgerEntry.save``/``delete`` and its queryset; raw SQL, a shell or another service
  would not go through the ORM).
- DELETE of a wallet or a hold is refused: entries and holds reference wallets without
  a foreign-key constraint (see ``rivya_billing.models.WALLET_REFERENCE_NOTE``), so the
  rows they point at must never go away.

TRUNCATE is deliberately left alone: it is how test runners and operators empty a
database, not a way to edit history one row at a time. Other databases (SQLite in
the embedded default) have no such triggers; there the ORM guards and the
reconciliation command (``rivya_ledger_check``) remain.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION rivya_billing_refuse_history_edit() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'rivya_billing: % of % % refused: the ledger is append-only', TG_OP, TG_TABLE_NAME, OLD.id
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Post a correcting entry (refund or adjust) instead.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER rivya_billing_ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON rivya_billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION rivya_billing_refuse_history_edit();

CREATE TRIGGER rivya_billing_wallet_never_deleted
    BEFORE DELETE ON rivya_billing_wallet
    FOR EACH ROW EXECUTE FUNCTION rivya_billing_refuse_history_edit();

CREATE TRIGGER rivya_billing_hold_never_deleted
    BEFORE DELETE ON rivya_billing_hold
    FOR EACH ROW EXECUTE FUNCTION rivya_billing_refuse_history_edit();
"""

REVERSE = """
DROP TRIGGER IF EXISTS rivya_billing_ledger_entry_append_only ON rivya_billing_ledgerentry;
DROP TRIGGER IF EXISTS rivya_billing_wallet_never_deleted ON rivya_billing_wallet;
DROP TRIGGER IF EXISTS rivya_billing_hold_never_deleted ON rivya_billing_hold;
DROP FUNCTION IF EXISTS rivya_billing_refuse_history_edit();
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
