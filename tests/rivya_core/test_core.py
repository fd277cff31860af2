"""rivya_core: one public-id algorithm for every app, one root error, the account-model accessor."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from rivya_core.conf import AppSettings, account_model_label, get_account_model
from rivya_core.exceptions import RivyaConfigurationError, RivyaError
from rivya_core.ids import ALPHABET, public_id

# The format every id stored before rivya_core existed has (three copies, two algorithms then).
ID_FORMAT = re.compile(r"^[a-z]+_[0-9A-Za-z]{24}$")


def test_public_id_keeps_the_stored_format():
    for _ in range(200):
        assert ID_FORMAT.match(public_id("task"))
    assert re.fullmatch(r"evt_[0-9A-Za-z]{8}", public_id("evt", 8))
    assert len({public_id("x") for _ in range(1000)}) == 1000


def test_public_id_characters_are_uniform_over_the_alphabet():
    # 62 symbols, 124,000 draws: each expected 2,000 times; 5 sigma is about +-220.
    counts = Counter("".join(public_id("x", 62)[2:] for _ in range(2000)))
    assert set(counts) == set(ALPHABET)
    assert all(1700 < count < 2300 for count in counts.values()), counts.most_common(3)


def test_every_app_makes_its_ids_with_the_core_algorithm(monkeypatch):
    """The apps' id helpers (named by their migrations) all call rivya_core.ids.public_id."""
    import rivya_api.ids
    import rivya_billing.models
    import rivya_webhooks.ids
    from rivya_core import ids

    calls = []
    monkeypatch.setattr(ids.secrets, "token_bytes", lambda n: calls.append(n) or bytes(range(n)))
    made = [
        rivya_billing.models.new_hold_id(),
        rivya_billing.models.new_entry_id(),
        rivya_webhooks.ids.endpoint_id(),
        rivya_webhooks.ids.event_id(),
        rivya_api.ids.public_id("task"),
    ]
    assert len(calls) == len(made)
    assert [value.split("_")[1] for value in made] == [ALPHABET[:24]] * len(made)
    assert rivya_api.ids.public_id is ids.public_id


def test_every_apps_errors_are_rivya_errors():
    from rivya_api.catalog.exceptions import CatalogError
    from rivya_api.files.exceptions import FileError
    from rivya_api.keys.exceptions import APIKeyError
    from rivya_billing.exceptions import BillingError
    from rivya_billing.exceptions import RivyaError as billing_root
    from rivya_webhooks.exceptions import RivyaWebhooksError, WebhooksConfigurationError

    assert billing_root is RivyaError
    for error_class in (BillingError, RivyaWebhooksError, CatalogError, FileError, APIKeyError):
        assert issubclass(error_class, RivyaError), error_class
    assert issubclass(WebhooksConfigurationError, RivyaConfigurationError)
    error = RivyaError("bad", param="amount")
    assert (str(error), error.param, RivyaError("x").param) == ("bad", "amount", None)


def test_old_import_paths_still_work():
    from rivya_billing.conf import AppSettings as billing_app_settings
    from rivya_billing.conf import account_model_label as billing_label

    assert billing_app_settings is AppSettings
    assert billing_label is account_model_label


def test_account_model_follows_the_setting(settings):
    from django.contrib.auth import get_user_model

    assert get_account_model()._meta.label == account_model_label()
    settings.RIVYA_ACCOUNT_MODEL = None  # unset: the user model
    assert get_account_model() is get_user_model()
    settings.RIVYA_ACCOUNT_MODEL = "auth.Group"
    assert account_model_label() == "auth.Group"
    from django.contrib.auth.models import Group

    assert get_account_model() is Group


def test_settings_object_reads_lazily_and_reloads(settings):
    settings.RIVYA_TEST_NS = {"SIZE": 3}
    conf = AppSettings("RIVYA_TEST_NS", {"SIZE": 1, "HOOK": "json.dumps"}, import_strings=("HOOK",))
    assert conf.SIZE == 3
    import json

    assert conf.HOOK is json.dumps
    settings.RIVYA_TEST_NS = {"SIZE": 5}
    assert conf.SIZE == 5
    with pytest.raises(AttributeError, match="Invalid RIVYA_TEST_NS setting"):
        conf.NOPE  # noqa: B018
    assert "SIZE" in dir(conf)
