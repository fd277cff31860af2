"""rivya_bootstrap's output contract and rivya_demo's welcome."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from rivya_api.accounts import account_for_user
from rivya_api.keys.models import APIKey
from rivya_api.keys.selectors import api_key_for_secret
from rivya_api.keys.services import api_key_create, api_key_revoke, api_key_roll
from rivya_api.keys.tokens import secret_is_well_formed
from rivya_billing.models import Wallet
from rivya_billing.selectors import wallet_entries, wallet_get
from rivya_billing.services import credits_reserve, credits_settle
from tests.rivya_api.keys.subprocesses import ROOT, django_env, manage_py

pytestmark = pytest.mark.django_db

SECRET_ANYWHERE = re.compile(r"rvya_sk_[A-Za-z0-9_\-…]+")


def bootstrap(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rivya_bootstrap", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_bootstrap_creates_user_account_and_key_and_prints_only_the_secret():
    out, _ = bootstrap("--username", "acme", "--key-name", "ci deploy")
    assert out.endswith("\n")
    lines = out.splitlines()
    assert len(lines) == 1
    secret = lines[-1]
    assert secret_is_well_formed(secret)
    key = api_key_for_secret(secret=secret)
    user = get_user_model().objects.get(username="acme")
    assert not user.has_usable_password()
    assert key.account == account_for_user(user)
    assert key.name == "ci deploy"
    assert key.status == "active"
    event = key.events.get()
    assert (event.action, event.source, event.actor) == ("created", "command", None)


def test_bootstrap_reuses_the_account_and_issues_a_new_key_each_time():
    first, _ = bootstrap("--username", "acme")
    second, _ = bootstrap("--username", "acme", "--credits", "0")
    assert first != second
    assert get_user_model().objects.filter(username="acme").count() == 1
    keys = APIKey.objects.filter(name="bootstrap")
    assert keys.count() == 2
    assert len({k.account_id for k in keys}) == 1


def test_bootstrap_grants_credits_through_the_ledger_on_every_run():
    bootstrap("--username", "acme", "--credits", "1000")
    account = account_for_user(get_user_model().objects.get(username="acme"))
    assert wallet_get(account=account).balance == 1000
    bootstrap("--username", "acme", "--credits", "250")
    grants = wallet_entries(account=account, type="grant")
    assert sorted(g.amount for g in grants) == [250, 1000]
    assert {g.actor for g in grants} == {"system:rivya_bootstrap"}
    assert wallet_get(account=account).balance == 1250
    bootstrap("--username", "acme", "--credits", "0")
    assert wallet_get(account=account).balance == 1250


def test_a_refused_bootstrap_grants_nothing():
    with pytest.raises(CommandError, match="0 or more"):
        bootstrap("--username", "acme", "--credits", "-1")
    assert not Wallet.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--username", "acme", "--credits", "-5"], "0 or more"),
        (["--username", "  "], "must not be empty"),
        (["--username", "acme", "--key-name", "x" * 101], "at most 100"),
        (["--username", "acme", "--scopes", "models:read,files:burn"], "--scopes: Unknown scope 'files:burn'"),
        (["--username", "acme", "--models", "rivya-image-1,nope"], "--models: Unknown model 'nope'"),
        (["--username", "acme", "--credit-limit", "-1"], "--credit-limit: credits must be an integer"),
        (["--username", "acme", "--credit-limit-window", "day"], "needs --credit-limit"),
    ],
)
def test_bootstrap_rejects_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        bootstrap(*args)
    assert not APIKey.objects.exists()


def test_bootstrap_restricts_the_key_with_scopes_models_and_a_credit_limit():
    from rivya_billing.services import spend_limit_get

    out, err = bootstrap(
        "--username",
        "customer",
        "--scopes",
        "models:read, generations:write",
        "--models",
        "rivya-image-1",
        "--credit-limit",
        "500",
        "--credit-limit-window",
        "month",
    )
    key = api_key_for_secret(secret=out.strip().splitlines()[-1])
    assert key.scopes == ["models:read", "generations:write"]
    assert key.allowed_models == ["rivya-image-1"]
    limit = spend_limit_get(pk=key.spend_limit_id)
    assert (limit.credits, limit.window) == (500, "month")
    plain = api_key_for_secret(secret=bootstrap("--username", "other")[0].strip().splitlines()[-1])
    assert plain.allowed_models is None
    assert plain.spend_limit_id is None
    assert "keys:write" not in plain.scopes
    admin = api_key_for_secret(secret=bootstrap("--username", "ops", "--scopes", "keys:read,keys:write")[0].strip())
    assert admin.scopes == ["keys:read", "keys:write"]


def _name_field() -> str:
    """A plain text field of whatever model the account is (the user's username, orghost's name)."""
    from rivya_api.accounts import get_account_model

    return "username" if get_account_model() is get_user_model() else "name"


def test_bootstrap_issues_a_key_for_an_existing_account_by_pk_or_by_field(make_account):
    from rivya_api.accounts import get_account_model

    account = make_account("acme-org")
    users_before = get_user_model().objects.count()
    accounts_before = get_account_model().objects.count()
    by_pk, _ = bootstrap("--account", str(account.pk), "--credits", "30", "--key-name", "ops")
    field = _name_field()
    by_field, _ = bootstrap("--account", getattr(account, field), "--account-field", field)
    for secret in (by_pk.strip(), by_field.strip()):
        assert api_key_for_secret(secret=secret).account == account
    assert wallet_get(account=account).balance == 30
    assert get_user_model().objects.count() == users_before, "no user is made for an existing account"
    assert get_account_model().objects.count() == accounts_before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "999999"], "No .* with pk='999999'"),
        (["--account", "x", "--account-field", "owner__password"], "must be pk or a field of"),
        (["--account", "not-a-number"], "is not a valid pk"),
        (["--account", "1", "--username", "acme"], "not allowed with argument"),
    ],
)
def test_bootstrap_refuses_an_account_it_cannot_find(args, message):
    with pytest.raises(CommandError, match=message):
        bootstrap(*args)
    assert not APIKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_bootstrap_as_a_process_secret_alone_on_stdout_logs_on_stderr_exit_status():
    """The exact contract operations scripts rely on, through a real ``manage.py`` process."""
    env = django_env()
    ok = subprocess.run(
        [*manage_py(), "rivya_bootstrap", "--username", "ops", "--key-name", "deploy"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("\n") == 1
    secret = ok.stdout.strip()
    assert secret_is_well_formed(secret)
    assert secret not in ok.stderr
    assert "Created user ops" in ok.stderr
    key = api_key_for_secret(secret=secret)
    assert key.masked in ok.stderr
    assert key.public_id in ok.stderr
    refused = subprocess.run(
        [*manage_py(), "rivya_bootstrap", "--username", "ops", "--credits", "-10"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert "--credits must be 0 or more" in refused.stderr
    assert APIKey.objects.count() == 1
    funded = subprocess.run(
        [*manage_py(), "rivya_bootstrap", "--username", "ops", "--credits", "10"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert funded.returncode == 0, funded.stderr
    assert secret_is_well_formed(funded.stdout.strip())
    assert "credits granted: 10" in funded.stderr
    assert wallet_get(account=key.account).balance == 10


def demo(key_file, *args: str) -> tuple[str, str]:
    """``rivya_demo``'s output and the secret it ends with (its last ``rvya_sk_…``)."""
    out = io.StringIO()
    call_command("rivya_demo", "--key-file", str(key_file), *args, stdout=out)
    text = out.getvalue()
    return text, SECRET_ANYWHERE.findall(text)[-1]


def test_demo_prints_url_curl_and_ends_with_the_full_secret(tmp_path):
    text, secret = demo(tmp_path / "demo_api_key")
    key = api_key_for_secret(secret=secret)
    assert key is not None
    assert key.status == "active"
    assert key.account == account_for_user(get_user_model().objects.get(username="demo"))
    assert "http://127.0.0.1:8000" in text
    assert f'curl -H "Authorization: Bearer {secret}" http://127.0.0.1:8000/api/v1/models' in text
    assert "http://127.0.0.1:8000/docs/" in text


def test_demo_keeps_one_key_across_runs_in_a_file_only_the_user_can_read(tmp_path):
    """Issue 22 (5): every make run used to mint another never-expiring demo key."""
    key_file = tmp_path / "var" / "demo_api_key"
    first_text, first = demo(key_file)
    assert "(new; its secret is kept in" in first_text
    assert key_file.read_text() == first + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second_text, second = demo(key_file)
    assert second == first
    assert "(the same as last time;" in second_text
    assert APIKey.objects.filter(name="demo").count() == 1
    assert get_user_model().objects.filter(username="demo").count() == 1
    # A file others could read is narrowed to the user's own again.
    key_file.chmod(0o644)
    assert demo(key_file)[1] == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_demo_issues_a_new_key_only_when_the_stored_one_no_longer_works(tmp_path):
    key_file = tmp_path / "demo_api_key"
    _, first = demo(key_file)
    api_key_revoke(api_key=api_key_for_secret(secret=first))
    _, second = demo(key_file)
    assert second != first
    assert key_file.read_text().strip() == second
    # Rolled: it still works during its grace, so it is still the one printed, with its end.
    key = api_key_for_secret(secret=second)
    api_key_roll(api_key=key, grace=timedelta(hours=1))
    rolled_text, again = demo(key_file)
    assert again == second
    assert "It was rolled and stops working at " in rolled_text
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert demo(key_file)[1] not in (first, second)
    # Someone else's key, or garbage, in the file is not the demo account's: replaced.
    other, other_secret = api_key_create(account=make_user_account("someone"), name="x")
    key_file.write_text(other_secret)
    assert demo(key_file)[1] != other_secret
    key_file.write_text("not a key")
    assert secret_is_well_formed(demo(key_file)[1])
    assert APIKey.objects.filter(name="demo", revoked_at__isnull=True).count() == 5


def make_user_account(username: str):
    from rivya_api.accounts import account_get_or_create_for_username

    return account_get_or_create_for_username(username=username)[0]


def test_demo_shows_the_real_balance_granted_once(tmp_path):
    key_file = tmp_path / "demo_api_key"
    text, secret = demo(key_file)
    assert "Demo account: demo, 1000 credits (0 held, 1000 available)" in text
    account = api_key_for_secret(secret=secret).account
    credits_reserve(account=account, amount=30, reference="task_demo")
    credits_settle(account=account, reference="task_demo", amount=4)
    credits_reserve(account=account, amount=6, reference="task_demo2")
    assert "Demo account: demo, 996 credits (6 held, 990 available)" in demo(key_file)[0]
    # 1000 credits, granted once however often make run runs it.
    assert wallet_get(account=account).balance == 996
    assert wallet_entries(account=account, type="grant").count() == 1


@pytest.mark.django_db(transaction=True)
def test_demo_as_make_run_runs_it_and_its_login_hint_works_as_written(tmp_path, settings):
    """The banner's changepassword command, pasted as printed in the repository, sets the password."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # the processes' hasher
    env = django_env()
    key_file = tmp_path / "demo_api_key"
    run = subprocess.run(
        [sys.executable, "manage.py", "rivya_demo", "--key-file", str(key_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    hint = re.search(r"set its password first with: (.+ changepassword demo)\)", run.stdout)
    assert hint, run.stdout
    command = hint.group(1)
    # The interpreter that ran it, relative to the repository when it lives there (.venv/bin/python).
    inside = Path(sys.executable).is_relative_to(ROOT)
    assert command.split()[0] == (os.path.relpath(sys.executable, ROOT) if inside else sys.executable)
    password = "a-long-Demo-passphrase-42"
    # No terminal: Django's getpass falls back to reading the two answers from stdin.
    changed = subprocess.run(
        ["sh", "-c", command],
        input=f"{password}\n{password}\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        start_new_session=True,
    )
    assert changed.returncode == 0, changed.stderr
    assert "Password changed successfully for user 'demo'" in changed.stdout
    assert get_user_model().objects.get(username="demo").check_password(password)
