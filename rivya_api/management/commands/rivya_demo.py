"""``manage.py rivya_demo``: the demo account and a fresh key for ``make run``.

Creates or reuses user ``demo`` through the same path as ``rivya_bootstrap``
(with 1000 credits, granted once however often it runs), issues a new key and
prints a short welcome with a curl example. The last ``rvya_sk_…``
string printed is always the full secret of the new key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from rivya_api.management.commands.rivya_bootstrap import bootstrap

DEMO_USERNAME = "demo"
DEMO_CREDITS = 1000
DEMO_CREDITS_REFERENCE = "rivya_demo:initial-credits"


class Command(BaseCommand):
    help = "Create or reuse the demo account, issue a new API key and print how to call the API with it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the server will listen.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = bootstrap(
            username=DEMO_USERNAME, credits=DEMO_CREDITS, key_name="demo", reference=DEMO_CREDITS_REFERENCE
        )
        url = options["url"].rstrip("/")
        credit_line = f"{DEMO_CREDITS} credits (granted once)"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Rivya API: {url}  (OpenAPI: {url}/api/v1/openapi.json, docs: {url}/api/v1/docs)",
                    f"Demo account: {result.user.get_username()}, {credit_line}",
                    f"New API key {result.api_key.public_id}; the secret is shown only now:",
                    "",
                    f"  {result.secret}",
                    "",
                    "Try it:",
                    "",
                    f'  curl -H "Authorization: Bearer {result.secret}" {url}/api/v1/models',
                    "",
                ]
            )
        )
