"""``manage.py rivya_demo``: the demo account and its one API key, for ``make run``.

Creates or reuses user ``demo`` (1000 credits, granted once however often it
runs) and keeps one demo key across runs: its secret is kept in
``var/demo_api_key``, a file only the local user may read (mode 0600), and
printed again on every run while the key still works. A new key is issued only
when there is none or the stored one no longer works (revoked, expired, or not
a key of this database's demo account), so repeated runs do not pile up keys.
This is the one place a secret rests in clear, on purpose: it is the local
developer's own demo key, on the developer's machine.

Prints the wallet's real balance and a login hint whose command runs as
written from where ``make run`` runs. The last ``rvya_sk_…`` string printed is
always the full secret of the demo key.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from rivya_api.accounts import account_get_or_create_for_username
from rivya_api.keys.models import APIKey
from rivya_api.keys.selectors import api_key_for_secret
from rivya_api.keys.services import api_key_create
from rivya_api.management.commands.rivya_bootstrap import SOURCE, grant_bootstrap_credits
from rivya_billing.selectors import wallet_get

DEMO_USERNAME = "demo"
DEMO_CREDITS = 1000
DEMO_CREDITS_REFERENCE = "rivya_demo:initial-credits"
KEY_FILE_MODE = 0o600


def default_key_file() -> Path:
    return Path(getattr(settings, "BASE_DIR", Path.cwd())) / "var" / "demo_api_key"


def stored_secret(path: Path) -> str | None:
    """The secret kept in ``path``, or None; a file others could read is narrowed to 0600 first."""
    try:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, KEY_FILE_MODE)
        return path.read_text(encoding="ascii").strip() or None
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def store_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by this user only: a 0600 file swapped in atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        try:
            os.fchmod(descriptor, KEY_FILE_MODE)  # whatever the umask did
            os.write(descriptor, f"{secret}\n".encode("ascii"))
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def usable_key(secret: str | None, account: Any) -> APIKey | None:
    """The stored secret's key if it belongs to the demo account and requests with it are accepted."""
    key = api_key_for_secret(secret=secret) if secret else None
    if key is None or key.account_id != account.pk or not key.works:
        return None
    return key


def manage_command() -> str:
    """How to run ``manage.py`` with this very interpreter, as typed from the current directory."""
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0].endswith("manage.py") else Path("manage.py")
    return f"{python} {script}"


class Command(BaseCommand):
    help = "Create or reuse the demo account and its API key (kept in var/demo_api_key) and print how to use them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the server will listen.")
        parser.add_argument(
            "--key-file", type=Path, default=None, help="Where the demo key's secret is kept (var/demo_api_key)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["key_file"] or default_key_file()
        with transaction.atomic():
            account, user, _ = account_get_or_create_for_username(username=DEMO_USERNAME)
            grant_bootstrap_credits(account=account, credits=DEMO_CREDITS, reference=DEMO_CREDITS_REFERENCE)
            secret = stored_secret(path)
            key = usable_key(secret, account)
            reused = key is not None
            if key is None:
                key, secret = api_key_create(account=account, name="demo", source=SOURCE)
                store_secret(path, secret)
        self.stdout.write(self._welcome(options["url"].rstrip("/"), user, account, key, secret, reused, path))

    def _welcome(self, url: str, user: Any, account: Any, key: APIKey, secret: str, reused: bool, path: Path) -> str:
        wallet = wallet_get(account=account)
        name = user.get_username()
        where = os.path.relpath(path)
        where = str(path) if where.startswith("..") else where
        said = "the same as last time" if reused else "new"
        lines = [
            "",
            f"Rivya API: {url}  (docs: {url}/docs/, API reference: {url}/api/v1/docs)",
            f"Demo account: {name}, {wallet.balance} credits ({wallet.held} held, {wallet.available} available)",
            f"Demo API key {key.public_id} ({said}; its secret is kept in {where}, readable only by you):",
            "",
            f"  {secret}",
            "",
        ]
        if key.status == APIKey.Status.ROLLING:
            until = key.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            lines += [f"It was rolled and stops working at {until}; a new demo key is issued after that.", ""]
        login = "log in as " + name
        if not user.has_usable_password():
            login += f"; set its password first with: {manage_command()} changepassword {name}"
        else:
            login += f" (forgot the password? {manage_command()} changepassword {name})"
        lines += [
            "Try it:",
            "",
            f'  curl -H "Authorization: Bearer {secret}" {url}/api/v1/models',
            "",
            f"Settings pages and Studio: {url}/settings/ ({login})",
            "",
        ]
        return "\n".join(lines)
