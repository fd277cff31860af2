"""The account boundary follows RIVYA_ACCOUNT_MODEL (the user by default, a host's own model if set)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command

from rivya_api.accounts import get_account_model

pytestmark = pytest.mark.django_db


def test_account_model_is_the_setting():
    assert get_account_model()._meta.label == apps.get_model(settings.RIVYA_ACCOUNT_MODEL)._meta.label


def test_factory_accounts_are_of_the_account_model(account):
    assert isinstance(account, get_account_model())


def test_every_account_foreign_key_targets_the_account_model():
    account_model = get_account_model()
    for app_label in ("rivya_api", "rivya_billing", "rivya_webhooks"):
        for model in apps.get_app_config(app_label).get_models():
            for field in model._meta.get_fields():
                if field.is_relation and field.name == "account":
                    assert field.related_model is account_model, f"{model.__name__}.account"


def test_migrations_are_committed_for_this_settings_module():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_a_missing_account_model_is_a_system_check_error(settings):
    settings.RIVYA_ACCOUNT_MODEL = "nowhere.Account"
    errors = [e for e in run_checks() if e.id == "rivya_api.E001"]
    assert errors
    assert "nowhere.Account" in errors[0].msg
