"""``manage.py rivya_bootstrap (--username NAME | --account VALUE [--account-field F]) [--credits N] [--key-name L]
[--grant-expires-in-days D] [--scopes a,b,c] [--models m1,m2]
[--credit-limit N [--credit-limit-window total|day|month]]``.

Issues a new API key for an account, optionally grants it N credits (expiring after D days
with ``--grant-expires-in-days D``), and prints the
secret alone as the last line of stdout; everything else goes to stderr (logging).
The account is either the one a user acts as (``--username``: the user is created or
reused, and the host's ``ACCOUNT_FOR_USER`` hook gives its account), or an existing
account of whatever model ``RIVYA_ACCOUNT_MODEL`` names, found by primary key
(``--account 42``) or by another of its fields (``--account acme --account-field slug``);
that form creates no user and no account. Operations scripts depend on this contract:

    KEY=$(python manage.py rivya_bootstrap --username acme --key-name ci)
    KEY=$(python manage.py rivya_bootstrap --account acme --account-field slug --key-name ci)
    KEY=$(python manage.py rivya_bootstrap --username acme --scopes keys:read,keys:write,models:read)
    KEY=$(python manage.py rivya_bootstrap --username acme --models rivya-image-1 --credit-limit 500 \
          --credit-limit-window month)

``--scopes`` (default: every scope but ``keys:read``/``keys:write``), ``--models`` (default:
every model) and ``--credit-limit`` (default: none; ``--credit-limit-window`` defaults to
``total``) restrict the key as ``POST /api/v1/keys`` would.

Exit status is non-zero, with nothing on stdout and nothing created, when the
command refuses (bad arguments).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from rivya_api.accounts import account_get_or_create_for_username, get_account_model
from rivya_api.keys.exceptions import APIKeyError
from rivya_api.keys.models import APIKey
from rivya_api.keys.scopes import SCOPES
from rivya_api.keys.services import NAME_MAX_LENGTH, CreditLimit, api_key_create
from rivya_billing.services import credits_grant

logger = logging.getLogger("rivya_api.commands")

SOURCE = "command"


def grant_bootstrap_credits(
    *, account: Any, credits: int, reference: str | None = None, expires_in_days: int | None = None
) -> None:
    """Grant ``credits`` to ``account`` through the ledger (``credits_grant``); 0 grants nothing.

    With ``expires_in_days`` the grant expires that many days from now (what is left of it
    then leaves the wallet; see ``rivya_billing.models.GRANT_EXPIRY_NOTE``).

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
        expires_at=None if expires_in_days is None else timezone.now() + timedelta(days=expires_in_days),
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


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def bootstrap(
    *,
    username: str = "",
    account: Any = None,
    credits: int,
    key_name: str,
    reference: str | None = None,
    scopes: list[str] | None = None,
    models: list[str] | None = None,
    credit_limit: CreditLimit | None = None,
    grant_expires_in_days: int | None = None,
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
    if grant_expires_in_days is not None and grant_expires_in_days < 1:
        raise CommandError("--grant-expires-in-days must be 1 or more.")
    if len(key_name) > NAME_MAX_LENGTH:
        raise CommandError(f"--key-name has at most {NAME_MAX_LENGTH} characters.")
    with transaction.atomic():
        user, created = None, False
        if account is None:
            account, user, created = account_get_or_create_for_username(username=username)
        grant_bootstrap_credits(
            account=account, credits=credits, reference=reference, expires_in_days=grant_expires_in_days
        )
        try:
            key, secret = api_key_create(
                account=account,
                name=key_name,
                source=SOURCE,
                scopes=scopes,
                models=models,
                credit_limit=credit_limit,
            )
        except APIKeyError as error:
            option = {"scopes": "--scopes", "models": "--models"}.get(
                (error.param or "").split("[")[0], "--credit-limit"
            )
            raise CommandError(f"{option}: {error}") from None
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
        parser.add_argument(
            "--grant-expires-in-days",
            type=int,
            default=None,
            metavar="D",
            help="The granted credits expire D days from now: what is left of them then leaves the wallet.",
        )
        parser.add_argument("--key-name", default="bootstrap", help="Label of the new key (default: bootstrap).")
        parser.add_argument(
            "--scopes",
            help=f"Comma-separated scopes (default: all but keys:read,keys:write); from: {','.join(SCOPES)}.",
        )
        parser.add_argument("--models", help="Comma-separated model ids the key may use (default: every model).")
        parser.add_argument("--credit-limit", type=int, help="The most credits the key may reserve per window.")
        parser.add_argument(
            "--credit-limit-window",
            choices=["total", "day", "month"],
            help="The window of --credit-limit: total (default), day or month (UTC).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = None
        if options["account"] is not None:
            account = account_lookup(value=options["account"], field=options["account_field"])
        if options["credit_limit_window"] and options["credit_limit"] is None:
            raise CommandError("--credit-limit-window needs --credit-limit.")
        credit_limit = None
        if options["credit_limit"] is not None:
            credit_limit = CreditLimit(
                credits=options["credit_limit"], window=options["credit_limit_window"] or "total"
            )
        result = bootstrap(
            username=options["username"] or "",
            account=account,
            credits=options["credits"],
            key_name=options["key_name"],
            scopes=_csv(options["scopes"]),
            models=_csv(options["models"]),
            credit_limit=credit_limit,
            grant_expires_in_days=options["grant_expires_in_days"],
        )
        who = "account" if result.user is None else f"user {result.user.get_username()}, account"
        logger.info(
            "%s %s %r; issued API key %s (%s) named %r with scopes %s; credits granted: %s",
            "Created" if result.user_created else "Reused",
            who,
            result.account,
            result.api_key.public_id,
            result.api_key.masked,
            result.api_key.name,
            ",".join(result.api_key.scopes),
            options["credits"],
        )
        self.stdout.write(result.secret)
