"""Re-encrypt every stored endpoint secret under the current SECRET_KEY.

After rotating ``SECRET_KEY`` (old key kept in ``SECRET_KEY_FALLBACKS``), run this,
then drop the old key from the fallbacks.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from rivya_webhooks.crypto import secret_reencrypt
from rivya_webhooks.models import WebhookEndpoint


class Command(BaseCommand):
    help = "Re-encrypt webhook endpoint secrets under the current SECRET_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        for pk in WebhookEndpoint.objects.values_list("pk", flat=True).iterator():
            with transaction.atomic():
                endpoint = WebhookEndpoint.objects.select_for_update().get(pk=pk)
                endpoint.secret_encrypted = secret_reencrypt(endpoint.secret_encrypted)
                if endpoint.previous_secret_encrypted:
                    endpoint.previous_secret_encrypted = secret_reencrypt(endpoint.previous_secret_encrypted)
                endpoint.save(update_fields=["secret_encrypted", "previous_secret_encrypted"])
            count += 1
        self.stdout.write(f"Re-encrypted the secrets of {count} webhook endpoint(s).")
