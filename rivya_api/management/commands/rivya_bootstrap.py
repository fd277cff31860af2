"""``manage.py rivya_bootstrap --username NAME [--credits N] [--key-name LABEL]``.

Creates or reuses the user and its account, grants N credits, issues a new API
key and prints the secret alone as the last line of stdout; everything else
goes to stderr (logging). Operations scripts depend on this contract:

    KEY=$(python manage.py rivya_bootstrap --username acme --key-name ci)

Exit status is non-zero, with nothing on stdout and nothing created, when the
command refuses (bad arguments).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from rivya_api.accounts import account_get_or_create_for_username
from rivya_api.keys.models import APIKey
from rivya_api.keys.services import NAME_MAX_LENGTH, api_key_create
from rivya_billing.services import credits_grant

logger = logging.getLogger("rivya_api.commands")

SOURCE = "command"


def grant_bootstrap_credits(*, account: Any, credits: int, reference: str | None = None) -> None:
    """Grant ``credits`` to ``account`` through the ledger (``credits_grant``); 0 grants nothing.

    ``reference``, when given, makes the grant idempotent (``rivya_demo`` passes
    one so that repeated ``make run`` grant its credits once); None means a new
    grant on every run. Runs inside the bootstrap transaction, so a failure
    undoes the user and key too.
    """
    if credits == 0:
        return
    credits_grant(
        account=account,
        amount=credits,
        reference=reference or f"bootstrap:{uuid.uuid4().hex}",
        actor="system:rivya_bootstrap",
        description="rivya_bootstrap --credits",
    )


@dataclass(frozen=True)
class Bootstrap:
    account: Any
    user: Any
    user_created: bool
    api_key: APIKey
    secret: str


def bootstrap(*, username: str, credits: int, key_name: str, reference: str | None = None) -> Bootstrap:
    """The shared path of ``rivya_bootstrap`` and ``rivya_demo``: account, credits, key, in one transaction."""
    username = (username or "").strip()
    if not username:
        raise CommandError("--username must not be empty.")
    if credits < 0:
        raise CommandError("--credits must be 0 or more.")
    if len(key_name) > NAME_MAX_LENGTH:
        raise CommandError(f"--key-name has at most {NAME_MAX_LENGTH} characters.")
    with transaction.atomic():
        account, user, created = account_get_or_create_for_username(username=username)
        grant_bootstrap_credits(account=account, credits=credits, reference=reference)
        key, secret = api_key_create(account=account, name=key_name, source=SOURCE)
    return Bootstrap(account=account, user=user, user_created=created, api_key=key, secret=secret)


class Command(BaseCommand):
    help = "Create or reuse an account, grant credits, issue an API key; prints the secret as the last stdout line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True, help="User to create or reuse; its account gets the key.")
        parser.add_argument("--credits", type=int, default=0, help="Credits to grant (default 0).")
        parser.add_argument("--key-name", default="bootstrap", help="Label of the new key (default: bootstrap).")

    def handle(self, *args: Any, **options: Any) -> None:
        result = bootstrap(username=options["username"], credits=options["credits"], key_name=options["key_name"])
        logger.info(
            "%s user %s (account %r); issued API key %s (%s) named %r; credits granted: %s",
            "Created" if result.user_created else "Reused",
            result.user.get_username(),
            result.account,
            result.api_key.public_id,
            result.api_key.masked,
            result.api_key.name,
            options["credits"],
        )
        self.stdout.write(result.secret)
