"""Take the hot wallet row out of the reserve path's foreign-key checks; guard deletes with triggers.

``Hold.wallet`` and ``LedgerEntry.wallet`` lose their database FK constraint (see
``rivya_billing.models.WALLET_REFERENCE_NOTE``: the commit-time check locks the wallet
row ``FOR KEY SHARE`` inside its critical section). What the constraint guarded is
kept another way: on PostgreSQL, triggers refuse DELETE of wallets and holds, so no
referenced row can go away; elsewhere the ORM's PROTECT and ``rivya_ledger_check``.
The ``(wallet, created_at, id)`` listing index goes: entries are listed by
``(wallet, sequence)``, which the unique constraint already indexes.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION rivya_billing_refuse_delete() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'rivya_billing: DELETE of % % refused: the ledger is append-only and its rows stay', TG_TABLE_NAME, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER rivya_billing_wallet_never_deleted
    BEFORE DELETE ON rivya_billing_wallet
    FOR EACH ROW EXECUTE FUNCTION rivya_billing_refuse_delete();

CREATE TRIGGER rivya_billing_hold_never_deleted
    BEFORE DELETE ON rivya_billing_hold
    FOR EACH ROW EXECUTE FUNCTION rivya_billing_refuse_delete();
"""

REVERSE = """
DROP TRIGGER IF EXISTS rivya_billing_wallet_never_deleted ON rivya_billing_wallet;
DROP TRIGGER IF EXISTS rivya_billing_hold_never_deleted ON rivya_billing_hold;
DROP FUNCTION IF EXISTS rivya_billing_refuse_delete();
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0002_ledger_entry_append_only_trigger")]

    operations = [
        migrations.RemoveIndex(model_name="ledgerentry", name="rivya_entry_listing"),
        migrations.AlterField(
            model_name="hold",
            name="wallet",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="holds",
                to="rivya_billing.wallet",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="wallet",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="rivya_billing.wallet",
            ),
        ),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
