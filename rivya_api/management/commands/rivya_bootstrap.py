"""``manage.py rivya_bootstrap (--username NAME | --account VALUE [--account-field F]) [--credits N] [--key-name L]``.

Issues a new API key for an account, optionally grants it N credits, and prints the
secret alone as the last line of stdout; everything else goes to stderr (logging).
The account is either the one a user acts as (``--username``: the user is created or
reused, and the host's ``ACCOUNT_FOR_USER`` hook gives its account), or an existing
account of whatever model ``RIVYA_ACCOUNT_MODEL`` names, found by primary key
(``--account 42``) or by another of its fields (``--account acme --account-field slug``);
that form creates no user and no account. Operations scripts depend on this contract:

    KEY=$(python manage.py rivya_bootstrap --username acme --key-name ci)
    KEY=$(python manage.py rivya_bootstrap --account acme --account-field slug --key-name ci)

Exit status is non-zero, with nothing on stdout and nothing created, when the
command refuses (bad arguments).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from rivya_api.accounts import account_get_or_create_for_username, get_account_model
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
    user: Any  # None when the key was issued for an existing account (--account)
    user_created: bool
    api_key: APIKey
    secret: str


def account_lookup(*, value: str, field: str = "pk") -> Any:
    """The existing account whose ``field`` (``pk`` or a concrete field of the account model) is ``value``."""
    model = get_account_model()
    fields = {"pk", *(f.name for f in model._meta.concrete_fields), *(f.attname for f in model._meta.concrete_fields)}
    if field not in fields:
        raise CommandError(
            f"--account-field must be pk or a field of {model._meta.label}: {', '.join(sorted(fields))}."
        )
    try:
        return model._default_manager.get(**{field: value})
    except model.DoesNotExist:
        raise CommandError(f"No {model._meta.label} with {field}={value!r}.") from None
    except model.MultipleObjectsReturned:
        raise CommandError(f"More than one {model._meta.label} has {field}={value!r}; use a unique field.") from None
    except (ValueError, TypeError, ValidationError) as exc:
        raise CommandError(f"{value!r} is not a valid {field} of {model._meta.label}: {exc}") from None


def bootstrap(
    *, username: str = "", account: Any = None, credits: int, key_name: str, reference: str | None = None
) -> Bootstrap:
    """The shared path of ``rivya_bootstrap`` and ``rivya_demo``: account, credits, key, in one transaction.

    ``account`` (an existing account) or ``username`` (a user created or reused, acting as
    the account the host's hook gives it) names whose key it is.
    """
    username = (username or "").strip()
    if not username and account is None:
        raise CommandError("--username must not be empty.")
    if credits < 0:
        raise CommandError("--credits must be 0 or more.")
    if len(key_name) > NAME_MAX_LENGTH:
        raise CommandError(f"--key-name has at most {NAME_MAX_LENGTH} characters.")
    with transaction.atomic():
        user, created = None, False
        if account is None:
            account, user, created = account_get_or_create_for_username(username=username)
        grant_bootstrap_credits(account=account, credits=credits, reference=reference)
        key, secret = api_key_create(account=account, name=key_name, source=SOURCE)
    return Bootstrap(account=account, user=user, user_created=created, api_key=key, secret=secret)


class Command(BaseCommand):
    help = "Create or reuse an account, grant credits, issue an API key; prints the secret as the last stdout line."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--username", help="User to create or reuse; the account it acts as gets the key.")
        who.add_argument("--account", help="An existing account (of RIVYA_ACCOUNT_MODEL), by primary key by default.")
        parser.add_argument(
            "--account-field", default="pk", help="Field of the account model that --account matches (default: pk)."
        )
        parser.add_argument("--credits", type=int, default=0, help="Credits to grant (default 0).")
        parser.add_argument("--key-name", default="bootstrap", help="Label of the new key (default: bootstrap).")

    def handle(self, *args: Any, **options: Any) -> None:
        account = None
        if options["account"] is not None:
            account = account_lookup(value=options["account"], field=options["account_field"])
        result = bootstrap(
            username=options["username"] or "",
            account=account,
            credits=options["credits"],
            key_name=options["key_name"],
        )
        who = "account" if result.user is None else f"user {result.user.get_username()}, account"
        logger.info(
            "%s %s %r; issued API key %s (%s) named %r; credits granted: %s",
            "Created" if result.user_created else "Reused",
            who,
            result.account,
            result.api_key.public_id,
            result.api_key.masked,
            result.api_key.name,
            options["credits"],
        )
        self.stdout.write(result.secret)
