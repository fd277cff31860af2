"""API keys gain scopes, a model allow-list and a pointer to their credit limit.

Existing keys get the default scopes (every scope but ``keys:read`` and
``keys:write``), no allow-list and no limit: they keep working exactly as before.
"""

from django.db import migrations, models

import rivya_api.keys.scopes


class Migration(migrations.Migration):
    dependencies = [
        ("rivya_api", "0006_generation_deadline_and_sweep_backoff"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="allowed_models",
            field=models.JSONField(blank=True, default=None, null=True),
        ),
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=models.JSONField(blank=True, default=rivya_api.keys.scopes.default_scopes),
        ),
        migrations.AddField(
            model_name="apikey",
            name="spend_limit_id",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="apikeyevent",
            name="action",
            field=models.CharField(
                choices=[("created", "Created"), ("updated", "Updated"), ("rolled", "Rolled"), ("revoked", "Revoked")],
                max_length=16,
            ),
        ),
    ]
