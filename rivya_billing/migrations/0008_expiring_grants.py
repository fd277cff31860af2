"""Expiring grants: the ``CreditGrant`` bucket of each grant made with ``expires_at``, and an
``expire`` ledger line without a hold (balance -amount: what was left of a grant at its expiry).

Numbered 0008, after 0007_spend_limits (which landed first with that number). The two
ledger check constraints are widened for the new kind of ``expire`` line (see
``rivya_billing.models.GRANT_EXPIRY_NOTE``); the reservation function of 0004 is untouched.
"""

import django.db.models.deletion
import django.db.models.expressions
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rivya_billing", "0007_spend_limits"),
    ]

    operations = [
        migrations.CreateModel(
            name="CreditGrant",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reference", models.CharField(help_text="The reference of the grant entry.", max_length=255)),
                ("amount", models.BigIntegerField(help_text="Credits granted.")),
                ("remaining", models.BigIntegerField(help_text="Credits of the grant not spent and not expired yet.")),
                ("drawn", models.BigIntegerField(default=0, help_text="Credits of the grant spent.")),
                (
                    "expired",
                    models.BigIntegerField(
                        default=0, help_text="Credits of the grant that expired (its expire entries)."
                    ),
                ),
                ("expires_at", models.DateTimeField(help_text="When what is left of the grant expires.")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name="ledgerentry",
            name="rivya_billing_entry_effect_by_type",
        ),
        migrations.RemoveConstraint(
            model_name="ledgerentry",
            name="rivya_billing_entry_hold_lines_have_hold",
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
                        ("hold__isnull", False),
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
                        (
                            "balance_delta",
                            django.db.models.expressions.CombinedExpression(models.F("amount"), "*", models.Value(-1)),
                        ),
                        ("held_delta", 0),
                        ("hold__isnull", True),
                        ("type", "expire"),
                    ),
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
                condition=models.Q(
                    ("type__in", ["grant", "adjust", "expire"]), ("hold__isnull", False), _connector="OR"
                ),
                name="rivya_billing_entry_hold_lines_have_hold",
            ),
        ),
        migrations.AddField(
            model_name="creditgrant",
            name="wallet",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="credit_grants",
                to="rivya_billing.wallet",
            ),
        ),
        migrations.AddIndex(
            model_name="creditgrant",
            index=models.Index(
                condition=models.Q(("remaining__gt", 0)),
                fields=["wallet", "expires_at"],
                name="rivya_grant_wallet_left",
            ),
        ),
        migrations.AddIndex(
            model_name="creditgrant",
            index=models.Index(condition=models.Q(("remaining__gt", 0)), fields=["expires_at"], name="rivya_grant_due"),
        ),
        migrations.AddConstraint(
            model_name="creditgrant",
            constraint=models.UniqueConstraint(
                fields=("wallet", "reference"), name="rivya_billing_grant_unique_reference"
            ),
        ),
        migrations.AddConstraint(
            model_name="creditgrant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("amount__gt", 0),
                    ("drawn__gte", 0),
                    ("expired__gte", 0),
                    ("remaining__gte", 0),
                    (
                        "amount",
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                models.F("remaining"), "+", models.F("drawn")
                            ),
                            "+",
                            models.F("expired"),
                        ),
                    ),
                ),
                name="rivya_billing_grant_amount_parts",
            ),
        ),
    ]
