"""Spend limits: a ``SpendLimit`` per limited owner, holds that name it, and a reservation that guards it.

0007: the reservation statement gains a spend limit.

``rivya_billing_reserve`` takes one more argument, ``spend_limit`` (a ``SpendLimit`` id or
NULL) and returns the limit's ``used``, ``credits`` and ``window_start`` after the
reservation. With a limit, the statement is, in this order:
1. l: the guard of the limit. The conditional UPDATE takes the limit's row lock and, after
   waiting, READ COMMITTED re-checks ``used + amount <= credits`` on the newest version;
   ``used`` starts from 0 when ``now`` is in a later window than ``window_start``.
2. h: insert the hold, naming the limit and the window it was counted in, only if l matched:
   a refusal of the limit inserts nothing and says so (``limit_refused``), so the caller
   can tell it from a short wallet without reading anything again.
3. w: the wallet guard as before.
4. the ledger line; a NULL sequence (w matched nothing) aborts the whole statement
   with 23502, so neither the hold nor the limit's ``used`` change.
Without a limit, the statement is exactly 0004's (the limit's CTE is not planned at all).
Lock order: limit, then wallet — settle and release lock hold, limit, wallet.
"""

import datetime
from importlib import import_module

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import rivya_billing.models

FORWARD_0005 = """
DROP FUNCTION IF EXISTS rivya_billing_reserve(
    bigint, bigint, text, text, text, text, timestamptz, timestamptz, boolean
);

CREATE OR REPLACE FUNCTION rivya_billing_window_start(kind text, at timestamptz) RETURNS timestamptz AS $$
    SELECT CASE kind
        WHEN 'day' THEN date_trunc('day', at, 'UTC')
        WHEN 'month' THEN date_trunc('month', at, 'UTC')
        ELSE '1970-01-01T00:00:00Z'::timestamptz
    END
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION rivya_billing_reserve(
    account bigint, amount bigint, reference text, hold_public_id text, entry_public_id text,
    actor text, now timestamptz, lease_expires_at timestamptz, commit_early boolean, spend_limit bigint,
    OUT reserved_hold_id bigint, OUT reserved_wallet_id bigint,
    OUT limit_used bigint, OUT limit_credits bigint, OUT limit_window_start timestamptz, OUT limit_refused boolean
) AS $$
BEGIN
    IF commit_early THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF spend_limit IS NULL THEN
        WITH h AS (
            INSERT INTO rivya_billing_hold (public_id, wallet_id, reference, amount, state, usage, captured, overrun,
                                            waived, refunded, lease_expires_at, lease_token, actor, created_at,
                                            resolved_at, spend_limit_id, spend_window_start)
            SELECT hold_public_id, wallet.id, reference, amount, 'pending', NULL, 0, 0,
                   0, 0, lease_expires_at, 0, actor, now, NULL, NULL, NULL
              FROM rivya_billing_wallet AS wallet
             WHERE wallet.account_id = account
         RETURNING id, wallet_id
        ), w AS (
            UPDATE rivya_billing_wallet AS wallet
               SET held = wallet.held + amount, last_sequence = wallet.last_sequence + 1, updated_at = now
             WHERE wallet.id = (SELECT h.wallet_id FROM h) AND wallet.balance - wallet.held >= amount
         RETURNING wallet.id, wallet.balance, wallet.held, wallet.last_sequence
        )
        INSERT INTO rivya_billing_ledgerentry AS entry (
            public_id, wallet_id, sequence, type, amount, balance_delta, held_delta,
            balance_after, held_after, reference, hold_id, actor, description, created_at
        )
        SELECT entry_public_id, h.wallet_id, w.last_sequence, 'reserve', amount, 0, amount,
               w.balance, w.held, reference, h.id, actor, '', now
          FROM h LEFT JOIN w ON w.id = h.wallet_id
        RETURNING entry.hold_id, entry.wallet_id INTO reserved_hold_id, reserved_wallet_id;
        RETURN;
    END IF;
    WITH l AS (
        UPDATE rivya_billing_spendlimit AS lim
           SET used = CASE WHEN lim.window_start >= rivya_billing_window_start(lim."window", now)
                           THEN lim.used ELSE 0 END + amount,
               window_start = GREATEST(lim.window_start, rivya_billing_window_start(lim."window", now)),
               updated_at = now
         WHERE lim.id = spend_limit
           AND CASE WHEN lim.window_start >= rivya_billing_window_start(lim."window", now)
                    THEN lim.used ELSE 0 END + amount <= lim.credits
     RETURNING lim.id, lim.used, lim.credits, lim.window_start
    ), h AS (
        INSERT INTO rivya_billing_hold (public_id, wallet_id, reference, amount, state, usage, captured, overrun,
                                        waived, refunded, lease_expires_at, lease_token, actor, created_at,
                                        resolved_at, spend_limit_id, spend_window_start)
        SELECT hold_public_id, wallet.id, reference, amount, 'pending', NULL, 0, 0,
               0, 0, lease_expires_at, 0, actor, now, NULL, spend_limit, l.window_start
          FROM rivya_billing_wallet AS wallet JOIN l ON true
         WHERE wallet.account_id = account
     RETURNING id, wallet_id
    ), w AS (
        UPDATE rivya_billing_wallet AS wallet
           SET held = wallet.held + amount, last_sequence = wallet.last_sequence + 1, updated_at = now
         WHERE wallet.id = (SELECT h.wallet_id FROM h) AND wallet.balance - wallet.held >= amount
     RETURNING wallet.id, wallet.balance, wallet.held, wallet.last_sequence
    ), e AS (
        INSERT INTO rivya_billing_ledgerentry AS entry (
            public_id, wallet_id, sequence, type, amount, balance_delta, held_delta,
            balance_after, held_after, reference, hold_id, actor, description, created_at
        )
        SELECT entry_public_id, h.wallet_id, w.last_sequence, 'reserve', amount, 0, amount,
               w.balance, w.held, reference, h.id, actor, '', now
          FROM h LEFT JOIN w ON w.id = h.wallet_id
        RETURNING entry.hold_id, entry.wallet_id
    )
    SELECT (SELECT e.hold_id FROM e), (SELECT e.wallet_id FROM e), (SELECT l.used FROM l),
           (SELECT l.credits FROM l), (SELECT l.window_start FROM l), NOT EXISTS (SELECT 1 FROM l)
      INTO reserved_hold_id, reserved_wallet_id, limit_used, limit_credits, limit_window_start, limit_refused;
END;
$$ LANGUAGE plpgsql;
"""

REVERSE_0005 = """
DROP FUNCTION IF EXISTS rivya_billing_reserve(
    bigint, bigint, text, text, text, text, timestamptz, timestamptz, boolean, bigint
);
DROP FUNCTION IF EXISTS rivya_billing_window_start(text, timestamptz);
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD_0005, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE_0005, params=None)
        # Back to 0004's function (its nine-argument signature).
        schema_editor.execute(import_module("rivya_billing.migrations.0004_reserve_function").FORWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("rivya_billing", "0006_low_balance_alerts"),
    ]

    operations = [
        migrations.AddField(
            model_name="hold",
            name="spend_window_start",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="SpendLimit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "public_id",
                    models.CharField(
                        default=rivya_billing.models.new_limit_id, editable=False, max_length=40, unique=True
                    ),
                ),
                (
                    "owner_ref",
                    models.CharField(help_text="Who is limited (opaque to billing).", max_length=200, unique=True),
                ),
                ("credits", models.BigIntegerField(help_text="The most the limit's holds may reserve in one window.")),
                (
                    "window",
                    models.CharField(
                        choices=[("total", "total"), ("day", "day (UTC)"), ("month", "month (UTC)")],
                        default="total",
                        max_length=8,
                    ),
                ),
                ("used", models.BigIntegerField(default=0, help_text="Reserved or charged in the current window.")),
                (
                    "window_start",
                    models.DateTimeField(
                        default=datetime.datetime(1970, 1, 1, 0, 0, tzinfo=datetime.UTC),
                        help_text="Start of the window ``used`` counts (UTC).",
                    ),
                ),
                ("reached_window_start", models.DateTimeField(blank=True, editable=False, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("credits__gte", 0)), name="rivya_billing_spendlimit_credits_gte_0"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("used__gte", 0)), name="rivya_billing_spendlimit_used_gte_0"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("window__in", ["total", "day", "month"])),
                        name="rivya_billing_spendlimit_window_valid",
                    ),
                ],
            },
        ),
        migrations.AddField(
            model_name="hold",
            name="spend_limit",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="holds",
                to="rivya_billing.spendlimit",
            ),
        ),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
