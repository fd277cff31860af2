"""Django admin of the ledger: grant and adjust with a reason, read-only entries, reconciliation status."""

from __future__ import annotations

import pytest
from django.contrib.admin import helpers
from django.urls import reverse

from rivya_billing import services
from rivya_billing.models import Hold, LedgerEntry, LowBalanceNotice, Wallet

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:rivya_billing_wallet_changelist"


@pytest.fixture
def wallets(make_account):
    accounts = [make_account(), make_account()]
    for account in accounts:
        services.credits_grant(account=account, amount=100, reference="grant:1")
    services.credits_reserve(account=accounts[0], amount=30, reference="task_1")
    return [Wallet.objects.get(account=account) for account in accounts]


def action_post(admin_client, action: str, wallets, **data):
    payload = {"action": action, helpers.ACTION_CHECKBOX_NAME: [w.pk for w in wallets], **data}
    return admin_client.post(reverse(CHANGELIST), payload, follow="apply" in data)


def test_the_list_shows_balances_and_a_reconciliation_status(admin_client, wallets):
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert page.count("consistent") == 2
    Wallet.objects.filter(pk=wallets[1].pk).update(balance=101)
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert page.count("consistent") == 1
    assert "DRIFT" in page


def test_the_wallet_page_replays_the_ledger(admin_client, wallets):
    url = reverse("admin:rivya_billing_wallet_change", args=[wallets[0].pk])
    page = admin_client.get(url).content.decode()
    assert "Consistent: 2 entries replay to balance 100 and held 30." in page
    assert "task_1" in page  # recent entries
    Hold.objects.filter(reference="task_1").update(amount=29)
    page = admin_client.get(url).content.decode()
    assert "pending holds add up to 29" in page


def test_grant_action_asks_for_amount_and_reason_and_writes_them_to_the_ledger(admin_client, admin_user, wallets):
    form_page = action_post(admin_client, "grant_credits", wallets)
    assert form_page.status_code == 200
    reference = form_page.context["form"].initial["reference"]
    assert reference.startswith("admin:grant:")

    done = action_post(
        admin_client, "grant_credits", wallets, apply="1", amount=25, reason="promo", reference=reference
    )
    assert done.status_code == 200
    assert "Granted 25 credits: 2 wallet(s)." in done.content.decode()
    grants = LedgerEntry.objects.filter(type="grant", reference__startswith=reference)
    assert sorted(grants.values_list("amount", "description", "actor")) == [(25, "promo", f"user:{admin_user.pk}")] * 2
    # A double submit of the same form grants nothing more.
    action_post(admin_client, "grant_credits", wallets, apply="1", amount=25, reason="promo", reference=reference)
    assert Wallet.objects.get(pk=wallets[1].pk).balance == 125


def test_grant_without_a_reason_is_refused(admin_client, wallets):
    response = action_post(
        admin_client, "grant_credits", wallets, apply="1", amount=25, reason="  ", reference="admin:grant:x"
    )
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert LedgerEntry.objects.filter(type="grant").count() == 2


def test_adjust_action_removes_credits_but_never_held_ones(admin_client, wallets):
    response = action_post(
        admin_client, "adjust_credits", wallets, apply="1", amount=-80, reason="chargeback", reference="admin:adj:1"
    )
    page = response.content.decode()
    assert "Cannot remove 80 credits: 70 available." in page
    assert "Adjusted by -80 credits: 1 wallet(s)." in page
    assert [Wallet.objects.get(pk=w.pk).balance for w in wallets] == [100, 20]
    entry = LedgerEntry.objects.get(type="adjust")
    assert (entry.balance_delta, entry.description) == (-80, "chargeback")


def test_a_wallet_is_opened_with_a_first_grant(admin_client, make_account):
    account = make_account()
    response = admin_client.post(
        reverse("admin:rivya_billing_wallet_add"), {"account": account.pk, "amount": 500, "reason": "new customer"}
    )
    assert response.status_code == 302
    wallet = Wallet.objects.get(account=account)
    assert wallet.balance == 500
    assert LedgerEntry.objects.get(wallet=wallet).description == "new customer"


def test_entries_and_holds_are_read_only(admin_client, wallets):
    entry = LedgerEntry.objects.first()
    assert admin_client.get(reverse("admin:rivya_billing_ledgerentry_changelist") + "?type=grant").status_code == 200
    change_url = reverse("admin:rivya_billing_ledgerentry_change", args=[entry.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert 'name="amount"' not in page.content.decode()
    assert admin_client.post(change_url, {"amount": 1}).status_code == 403
    assert admin_client.get(reverse("admin:rivya_billing_ledgerentry_add")).status_code == 403
    assert admin_client.get(reverse("admin:rivya_billing_ledgerentry_delete", args=[entry.pk])).status_code == 403
    assert admin_client.get(reverse("admin:rivya_billing_hold_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:rivya_billing_wallet_delete", args=[wallets[0].pk])).status_code == 403


def test_the_low_balance_threshold_is_set_from_the_wallet_page_through_the_service(admin_client, wallets):
    wallet = wallets[0]  # balance 100, held 30: 70 available
    url = reverse("admin:rivya_billing_wallet_change", args=[wallet.pk])
    response = admin_client.post(url, {"account": wallet.account_id, "low_balance_threshold": 80})
    assert response.status_code == 302, response.content.decode()[:2000]
    wallet.refresh_from_db()
    assert wallet.low_balance_threshold == 80
    assert not wallet.low_balance_armed  # 70 < 80: judged at once
    assert wallet.balance == 100  # nothing else was written
    (notice,) = LowBalanceNotice.objects.filter(wallet=wallet)
    assert (notice.available, notice.threshold) == (70, 80)
    page = admin_client.get(reverse("admin:rivya_billing_lowbalancenotice_changelist")).content.decode()
    assert "credits.low 70 &lt; 80" in page
    assert admin_client.get(reverse("admin:rivya_billing_lowbalancenotice_add")).status_code == 403


def test_a_bad_threshold_is_refused_by_the_form(admin_client, wallets):
    url = reverse("admin:rivya_billing_wallet_change", args=[wallets[0].pk])
    response = admin_client.post(url, {"account": wallets[0].account_id, "low_balance_threshold": 0})
    assert response.status_code == 200  # the form again, with the error
    wallets[0].refresh_from_db()
    assert wallets[0].low_balance_threshold is None


def test_the_grant_action_can_make_an_expiring_grant_and_lists_it_read_only(admin_client, wallets):
    from datetime import timedelta

    from django.utils import timezone

    from rivya_billing.models import CreditGrant

    form_page = action_post(admin_client, "grant_credits", wallets)
    assert 'name="expires_at"' in form_page.content.decode()
    assert 'name="expires_at"' not in action_post(admin_client, "adjust_credits", wallets).content.decode()
    reference = form_page.context["form"].initial["reference"]
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0, second=0)
    done = action_post(
        admin_client,
        "grant_credits",
        wallets,
        apply="1",
        amount=40,
        reason="promo",
        reference=reference,
        expires_at=expires.strftime("%Y-%m-%d %H:%M"),
    )
    assert "Granted 40 credits: 2 wallet(s)." in done.content.decode()
    grants = CreditGrant.objects.filter(reference__startswith=reference)
    assert sorted(grants.values_list("amount", "remaining", "expires_at")) == [(40, 40, expires)] * 2

    # An expiry in the past is refused for each wallet, with the service's message.
    past = action_post(
        admin_client,
        "grant_credits",
        wallets[:1],
        apply="1",
        amount=5,
        reason="late",
        reference=reference + "x",
        expires_at="2020-01-01 00:00",
    )
    assert "expires_at must be in the future" in past.content.decode()

    changelist = admin_client.get(reverse("admin:rivya_billing_creditgrant_changelist"))
    assert changelist.status_code == 200
    assert reference in changelist.content.decode()
    grant = grants.first()
    assert admin_client.post(reverse("admin:rivya_billing_creditgrant_change", args=[grant.pk]), {}).status_code == 403
    assert admin_client.get(reverse("admin:rivya_billing_creditgrant_add")).status_code == 403
