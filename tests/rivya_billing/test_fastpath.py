"""``rivya_billing.fastpath`` against the ORM query it stands in for, on whichever database the suite runs."""

from __future__ import annotations

import pytest

from rivya_billing import fastpath, selectors, services
from rivya_billing.models import Wallet

pytestmark = pytest.mark.django_db


def orm_available(account) -> int:
    wallet = Wallet.objects.filter(account=account).first()
    return wallet.available if wallet else 0


def test_available_reads_what_the_orm_reads(make_account):
    account, other, empty = make_account(), make_account(), make_account()
    services.credits_grant(account=account, amount=100, reference="g")
    services.credits_grant(account=other, amount=7, reference="g")
    services.credits_reserve(account=account, amount=30, reference="job")
    for who in (account, other, empty):
        assert fastpath.available(who) == orm_available(who)
        assert fastpath.available(who.pk) == orm_available(who)
    assert fastpath.available(account) == 70


@pytest.mark.parametrize("plain_sql", [True, False])
def test_the_setting_chooses_the_path_and_both_agree(make_account, rivya_settings, monkeypatch, plain_sql):
    rivya_settings("RIVYA_BILLING", AVAILABLE_SQL=plain_sql)
    calls = []
    real = fastpath.available
    monkeypatch.setattr(fastpath, "available", lambda account: calls.append(account) or real(account))
    account = make_account()
    assert selectors.credits_available(account=account) == 0
    services.credits_grant(account=account, amount=10, reference="g")
    services.credits_reserve(account=account, amount=4, reference="job")
    assert selectors.credits_available(account=account) == 6
    assert selectors.credits_available(account=account.pk) == 6
    assert len(calls) == (3 if plain_sql else 0)


def _fields(wallet: Wallet) -> dict:
    return {field.attname: getattr(wallet, field.attname) for field in Wallet._meta.concrete_fields}


def test_wallet_load_reads_what_the_orm_get_reads(make_account):
    account, other, empty = make_account(), make_account(), make_account()
    services.credits_grant(account=account, amount=100, reference="g")
    services.credits_grant(account=other, amount=7, reference="g")
    services.credits_reserve(account=account, amount=30, reference="job")
    services.credits_alert_set(account=other, low_balance_threshold=5)
    for who in (account, other):
        expected = Wallet.objects.get(account=who)
        for given in (who, who.pk):
            loaded = fastpath.wallet_load(given)
            assert type(loaded) is Wallet
            assert loaded.pk == expected.pk
            assert _fields(loaded) == _fields(expected)
            assert loaded._state.adding is False
            assert loaded._state.db == expected._state.db
    assert fastpath.wallet_load(empty) is None
    assert fastpath.wallet_load(account).available == 70


@pytest.mark.parametrize("compiled", [True, False])
def test_wallet_get_refuses_what_is_not_a_saved_account_as_the_orm_does(make_account, rivya_settings, compiled):
    from django.contrib.auth.models import Group

    rivya_settings("RIVYA_BILLING", WALLET_GET_COMPILED=compiled)
    victim = make_account()
    services.credits_grant(account=victim, amount=1234, reference="g")
    # A host whose account model is not what its account-for-user hook returns: never another's wallet.
    not_an_account = Group.objects.create(id=victim.pk, name="not an account")
    with pytest.raises(ValueError, match="Must be"):
        selectors.wallet_get(account=not_an_account)
    with pytest.raises(ValueError, match="must be saved"):
        selectors.wallet_get(account=type(victim)())


@pytest.mark.parametrize("compiled", [True, False])
def test_wallet_get_setting_chooses_the_path_and_both_agree(make_account, rivya_settings, monkeypatch, compiled):
    rivya_settings("RIVYA_BILLING", WALLET_GET_COMPILED=compiled)
    calls = []
    real = fastpath.wallet_load
    monkeypatch.setattr(fastpath, "wallet_load", lambda account: calls.append(account) or real(account))
    account = make_account()
    unsaved = selectors.wallet_get(account=account)
    assert unsaved.pk is None
    assert unsaved.account_id == account.pk
    assert (unsaved.balance, unsaved.held) == (0, 0)
    assert selectors.wallet_get(account=account.pk).account_id == account.pk
    services.credits_grant(account=account, amount=10, reference="g")
    services.credits_reserve(account=account, amount=4, reference="job")
    wallet = selectors.wallet_get(account=account)
    assert (wallet.balance, wallet.held, wallet.available) == (10, 4, 6)
    assert _fields(wallet) == _fields(Wallet.objects.get(account=account))
    assert len(calls) == (3 if compiled else 0)
