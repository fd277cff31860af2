"""Wallets, holds and the append-only ledger, with the constraints that keep them consistent."""

import django.db.models.deletion
import django.db.models.expressions
import django.utils.timezone
from django.db import migrations, models

import rivya_billing.models
from rivya_billing.conf import account_model_label


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(account_model_label()),
    ]

    operations = [
        migrations.CreateModel(
            name="Hold",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "public_id",
                    models.CharField(default=rivya_billing.models.new_hold_id, editable=False, max_length=40),
                ),
                (
                    "reference",
                    models.CharField(help_text="What the hold is for: a task id, a chat message id …", max_length=255),
                ),
                ("amount", models.BigIntegerField(help_text="Credits held.")),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("settled", "settled"),
                            ("released", "released"),
                            ("expired", "expired"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("usage", models.BigIntegerField(blank=True, help_text="Usage reported at settle time.", null=True)),
                ("captured", models.BigIntegerField(default=0, help_text="Charged from the hold at settle time.")),
                (
                    "overrun",
                    models.BigIntegerField(default=0, help_text="Charged above the hold (OVERRUN_POLICY 'available')."),
                ),
                ("waived", models.BigIntegerField(default=0, help_text="Usage above the hold that was not charged.")),
                ("refunded", models.BigIntegerField(default=0, help_text="Refunded of what was charged.")),
                ("lease_expires_at", models.DateTimeField()),
                ("lease_token", models.PositiveIntegerField(default=0)),
                (
                    "actor",
                    models.CharField(blank=True, help_text="Key or user that reserved (opaque).", max_length=200),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="Wallet",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "balance",
                    models.BigIntegerField(default=0, help_text="Credits owned (sum of the ledger's balance changes)."),
                ),
                ("held", models.BigIntegerField(default=0, help_text="Credits reserved by pending holds.")),
                (
                    "last_sequence",
                    models.BigIntegerField(default=0, help_text="Sequence number of the newest ledger entry."),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "account",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="rivya_wallet",
                        to=account_model_label(),
                        verbose_name="account",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="LedgerEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "public_id",
                    models.CharField(default=rivya_billing.models.new_entry_id, editable=False, max_length=40),
                ),
                ("sequence", models.BigIntegerField()),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("grant", "grant"),
                            ("reserve", "reserve"),
                            ("settle", "settle"),
                            ("release", "release"),
                            ("expire", "expire"),
                            ("overrun", "overrun"),
                            ("waive", "waive"),
                            ("refund", "refund"),
                            ("adjust", "adjust"),
                        ],
                        max_length=10,
                    ),
                ),
                ("amount", models.BigIntegerField(help_text="Size of the entry; its sign is in the deltas.")),
                ("balance_delta", models.BigIntegerField()),
                ("held_delta", models.BigIntegerField()),
                ("balance_after", models.BigIntegerField()),
                ("held_after", models.BigIntegerField()),
                ("reference", models.CharField(max_length=255)),
                (
                    "actor",
                    models.CharField(
                        blank=True, help_text="Key or user that caused the entry (opaque).", max_length=200
                    ),
                ),
                ("description", models.CharField(blank=True, max_length=500)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "hold",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="rivya_billing.hold",
                    ),
                ),
                (
                    "wallet",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="rivya_billing.wallet",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "ledger entries",
            },
        ),
        migrations.AddField(
            model_name="hold",
            name="wallet",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="holds",
                to="rivya_billing.wallet",
            ),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(
                condition=models.Q(("held__gte", 0)), name="rivya_billing_wallet_held_gte_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(
                condition=models.Q(("balance__gte", models.F("held"))), name="rivya_billing_wallet_available_gte_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(
                condition=models.Q(("last_sequence__gte", 0)), name="rivya_billing_wallet_sequence_gte_0"
            ),
        ),
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(fields=["wallet", "created_at", "id"], name="rivya_entry_listing"),
        ),
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(fields=["wallet", "reference"], name="rivya_entry_reference"),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(fields=("public_id",), name="rivya_billing_entry_unique_public_id"),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                fields=("wallet", "sequence"), name="rivya_billing_entry_unique_sequence"
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                condition=models.Q(("type__in", ["grant", "adjust", "refund"])),
                fields=("wallet", "type", "reference"),
                name="rivya_billing_entry_unique_keyed_reference",
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                condition=models.Q(("type__in", ["reserve", "settle", "release", "expire", "overrun", "waive"])),
                fields=("hold", "type"),
                name="rivya_billing_entry_one_line_per_hold",
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("sequence__gte", 1)), name="rivya_billing_entry_sequence_gte_1"
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="rivya_billing_entry_amount_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("balance_after__gte", models.F("held_after")), ("held_after__gte", 0)),
                name="rivya_billing_entry_after_in_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("balance_delta", models.F("amount")), ("held_delta", 0), ("type", "grant")),
                    models.Q(("balance_delta", 0), ("held_delta", models.F("amount")), ("type", "reserve")),
                    models.Q(
                        (
                            "balance_delta",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        (
                            "held_delta",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        ("type", "settle"),
                    ),
                    models.Q(
                        ("balance_delta", 0),
                        (
                            "held_delta",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        ("type", "release"),
                    ),
                    models.Q(
                        ("balance_delta", 0),
                        (
                            "held_delta",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        ("type", "expire"),
                    ),
                    models.Q(
                        (
                            "balance_delta",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        ("held_delta", 0),
                        ("type", "overrun"),
                    ),
                    models.Q(("balance_delta", 0), ("held_delta", 0), ("type", "waive")),
                    models.Q(("balance_delta", models.F("amount")), ("held_delta", 0), ("type", "refund")),
                    models.Q(
                        ("held_delta", 0),
                        ("type", "adjust"),
                        models.Q(
                            ("balance_delta", models.F("amount")),
                            (
                                "balance_delta",
                                django.db.models.expressions.CombinedExpression(
                                    models.F("amount"), "*", models.Value(-1)
                                ),
                            ),
                            _connector="OR",
                        ),
                    ),
                    _connector="OR",
                ),
                name="rivya_billing_entry_effect_by_type",
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("type__in", ["grant", "adjust"]), ("hold__isnull", False), _connector="OR"),
                name="rivya_billing_entry_hold_lines_have_hold",
            ),
        ),
        migrations.AddIndex(
            model_name="hold",
            index=models.Index(
                condition=models.Q(("state", "pending")), fields=["lease_expires_at"], name="rivya_hold_pending_lease"
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.UniqueConstraint(fields=("public_id",), name="rivya_billing_hold_unique_public_id"),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.UniqueConstraint(
                fields=("wallet", "reference"), name="rivya_billing_hold_unique_reference"
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="rivya_billing_hold_amount_gt_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("captured__gte", 0), ("captured__lte", models.F("amount")), ("overrun__gte", 0), ("waived__gte", 0)
                ),
                name="rivya_billing_hold_charges_in_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("refunded__gte", 0),
                    (
                        "refunded__lte",
                        django.db.models.expressions.CombinedExpression(models.F("captured"), "+", models.F("overrun")),
                    ),
                ),
                name="rivya_billing_hold_refund_lte_charge",
            ),
        ),
        migrations.AddConstraint(
            model_name="hold",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("resolved_at__isnull", False), ("state", "settled"), ("usage__isnull", False)),
                    models.Q(
                        ("captured", 0),
                        ("overrun", 0),
                        ("refunded", 0),
                        ("state__in", ["pending", "released", "expired"]),
                        ("usage__isnull", True),
                        ("waived", 0),
                        models.Q(
                            models.Q(("resolved_at__isnull", True), ("state", "pending")),
                            models.Q(("resolved_at__isnull", False), ("state__in", ["released", "expired"])),
                            _connector="OR",
                        ),
                    ),
                    _connector="OR",
                ),
                name="rivya_billing_hold_state_fields",
            ),
        ),
    ]
