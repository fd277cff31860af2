"""The low-balance alert: a threshold on the wallet, and a trigger that decides each crossing.

Numbered 0006 (not 0005) so that it can sit after a sibling 0005 of another branch by its
dependency only. The trigger is the one ``rivya_billing.models.LOW_BALANCE_NOTE`` explains:
fired by every UPDATE of ``balance``, ``held`` or ``low_balance_threshold`` of a wallet that
has a threshold (the ``WHEN`` clause keeps every other wallet's updates, the hot reservation
among them, free of it), it moves ``low_balance_armed`` and writes one ``LowBalanceNotice``
per crossing in the statement that made the change, under the wallet's row lock.

PostgreSQL: a BEFORE trigger sets ``NEW.low_balance_armed`` (no second UPDATE of the row).
SQLite: an AFTER trigger updates ``low_balance_armed``, a column outside its ``UPDATE OF``
list, so it does not fire itself again. Both are tested against the same scenarios.
"""

import django.db.models.deletion
from django.db import migrations, models

PG_FORWARD = """
CREATE OR REPLACE FUNCTION rivya_billing_wallet_low_balance() RETURNS trigger AS $$
BEGIN
    IF NEW.balance - NEW.held < NEW.low_balance_threshold THEN
        IF NEW.low_balance_armed THEN
            NEW.low_balance_armed := false;
            INSERT INTO rivya_billing_lowbalancenotice (wallet_id, available, sequence, threshold, created_at, published_at)
            VALUES (NEW.id, NEW.balance - NEW.held, NEW.last_sequence, NEW.low_balance_threshold, clock_timestamp(), NULL);
        END IF;
    ELSIF NOT NEW.low_balance_armed THEN
        NEW.low_balance_armed := true;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER rivya_billing_wallet_low_balance
    BEFORE UPDATE OF balance, held, low_balance_threshold ON rivya_billing_wallet
    FOR EACH ROW WHEN (NEW.low_balance_threshold IS NOT NULL)
    EXECUTE FUNCTION rivya_billing_wallet_low_balance();
"""

PG_REVERSE = """
DROP TRIGGER IF EXISTS rivya_billing_wallet_low_balance ON rivya_billing_wallet;
DROP FUNCTION IF EXISTS rivya_billing_wallet_low_balance();
"""

SQLITE_FORWARD = """
CREATE TRIGGER rivya_billing_wallet_low_balance
AFTER UPDATE OF balance, held, low_balance_threshold ON rivya_billing_wallet
FOR EACH ROW WHEN NEW.low_balance_threshold IS NOT NULL
BEGIN
    INSERT INTO rivya_billing_lowbalancenotice (wallet_id, available, sequence, threshold, created_at, published_at)
    SELECT NEW.id, NEW.balance - NEW.held, NEW.last_sequence, NEW.low_balance_threshold,
           strftime('%Y-%m-%d %H:%M:%f', 'now'), NULL
     WHERE NEW.low_balance_armed AND NEW.balance - NEW.held < NEW.low_balance_threshold;
    UPDATE rivya_billing_wallet
       SET low_balance_armed = (NEW.balance - NEW.held >= NEW.low_balance_threshold)
     WHERE id = NEW.id AND low_balance_armed != (NEW.balance - NEW.held >= NEW.low_balance_threshold);
END;
"""

SQLITE_REVERSE = "DROP TRIGGER IF EXISTS rivya_billing_wallet_low_balance;"


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD, params=None)
    else:  # pragma: no cover - the project supports PostgreSQL and SQLite
        raise NotImplementedError(f"rivya_billing's low-balance trigger has no {vendor} version.")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_REVERSE, params=None)


class Migration(migrations.Migration):
    dependencies = [("rivya_billing", "0004_reserve_function")]

    operations = [
        migrations.CreateModel(
            name="LowBalanceNotice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "available",
                    models.BigIntegerField(help_text="Available credits right after the change that crossed."),
                ),
                (
                    "sequence",
                    models.BigIntegerField(
                        help_text="The wallet's newest ledger sequence at the crossing (the entry that crossed, or "
                        "the last one before a new threshold was set)."
                    ),
                ),
                ("threshold", models.BigIntegerField(help_text="The threshold that was crossed.")),
                ("created_at", models.DateTimeField(help_text="When the crossing committed (database time).")),
                (
                    "published_at",
                    models.DateTimeField(blank=True, help_text="When credits.low was published.", null=True),
                ),
                (
                    "wallet",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="low_balance_notices",
                        to="rivya_billing.wallet",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("published_at__isnull", True)),
                        fields=["id"],
                        name="rivya_low_balance_pending",
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="wallet",
            name="low_balance_armed",
            field=models.BooleanField(
                default=True,
                help_text="False once credits.low fired, until available is back at the threshold or above.",
            ),
        ),
        migrations.AddField(
            model_name="wallet",
            name="low_balance_threshold",
            field=models.BigIntegerField(
                blank=True, help_text="A credits.low event is published when available falls below this.", null=True
            ),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("low_balance_threshold__isnull", True), ("low_balance_threshold__gte", 1), _connector="OR"
                ),
                name="rivya_billing_wallet_low_balance_threshold_gte_1",
            ),
        ),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
