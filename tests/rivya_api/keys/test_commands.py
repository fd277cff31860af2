"""rivya_bootstrap's output contract and rivya_demo's welcome."""

from __future__ import annotations

import io
import re
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from rivya_api.accounts import account_for_user
from rivya_api.keys.models import APIKey
from rivya_api.keys.selectors import api_key_for_secret
from rivya_api.keys.tokens import secret_is_well_formed
from rivya_billing.models import Wallet
from rivya_billing.selectors import wallet_entries, wallet_get
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
    ],
)
def test_bootstrap_rejects_bad_arguments(args, message):
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


def test_demo_prints_url_curl_and_ends_with_the_full_secret():
    out = io.StringIO()
    call_command("rivya_demo", stdout=out)
    text = out.getvalue()
    found = SECRET_ANYWHERE.findall(text)
    secret = found[-1]
    key = api_key_for_secret(secret=secret)
    assert key is not None
    assert key.status == "active"
    assert key.account == account_for_user(get_user_model().objects.get(username="demo"))
    assert "http://127.0.0.1:8000" in text
    assert f'curl -H "Authorization: Bearer {secret}" http://127.0.0.1:8000/api/v1/models' in text
    again = io.StringIO()
    call_command("rivya_demo", stdout=again)
    second = SECRET_ANYWHERE.findall(again.getvalue())[-1]
    assert second != secret
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert api_key_for_secret(secret=secret).status == "active"  # earlier demo keys keep working
    assert "1000 credits (granted once)" in text
    # 1000 credits, granted once however often make run runs it.
    assert wallet_get(account=key.account).balance == 1000
    assert wallet_entries(account=key.account, type="grant").count() == 1
