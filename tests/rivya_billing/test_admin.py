"""Django admin of the ledger: grant or adjust with a reason (idempotent per form), read-only entries, reconciling."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import reverse

from rivya_billing.models import Hold, LedgerEntry, Wallet
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant, credits_reserve

pytestmark = pytest.mark.django_db


def credits_url(wallet: Wallet) -> str:
    return reverse("admin:rivya_billing_wallet_credits", args=[wallet.pk])


def form_reference(html: str) -> str:
    return re.search(r'name="reference" value="([^"]+)"', html).group(1)


@pytest.fixture
def wallet(account) -> Wallet:
    credits_grant(account=account, amount=50, reference="welcome")
    return Wallet.objects.get(account=account)


def test_wallet_page_shows_totals_ledger_and_a_consistent_reconciliation(admin_client, wallet):
    credits_reserve(account=wallet.account, amount=5, reference="task_abc")
    html = admin_client.get(reverse("admin:rivya_billing_wallet_change", args=[wallet.pk])).content.decode()
    assert "✔ consistent: 2 entries" in html
    assert "welcome" in html
    assert "task_abc" in html
    assert credits_url(wallet) in html
    assert 'name="_save"' not in html  # read-only: credits change through the form only
    listing = admin_client.get(reverse("admin:rivya_billing_wallet_changelist"), {"q": "task_abc"}).content.decode()
    assert str(wallet) in listing


def test_grant_and_adjust_need_a_reason_and_land_in_the_ledger(admin_client, admin_user, wallet):
    page = admin_client.get(credits_url(wallet)).content.decode()
    assert "Balance <strong>50</strong>" in page
    reference = form_reference(page)
    missing = admin_client.post(
        credits_url(wallet), {"action": "grant", "amount": 10, "reason": " ", "reference": reference}
    )
    assert missing.status_code == 200
    assert "A reason is required." in missing.content.decode()
    assert wallet_get(account=wallet.account).balance == 50

    data = {"action": "grant", "amount": 10, "reason": "Goodwill for ticket 4411", "reference": reference}
    response = admin_client.post(credits_url(wallet), data)
    assert response.status_code == 302
    entry = LedgerEntry.objects.get(wallet=wallet, type="grant", description="Goodwill for ticket 4411")
    assert (entry.amount, entry.actor, entry.reference) == (10, f"staff:{admin_user.pk}", f"admin:{reference}")
    # The same form submitted again (double click, resent POST) changes nothing.
    admin_client.post(credits_url(wallet), data)
    assert wallet_get(account=wallet.account).balance == 60

    adjust = {"action": "adjust", "amount": -15, "reason": "Duplicate grant", "reference": "other-form"}
    admin_client.post(credits_url(wallet), adjust)
    entry = LedgerEntry.objects.get(wallet=wallet, type="adjust")
    assert (entry.balance_delta, entry.description) == (-15, "Duplicate grant")
    assert wallet_get(account=wallet.account).balance == 45

    too_much = admin_client.post(
        credits_url(wallet), {"action": "adjust", "amount": -1000, "reason": "x", "reference": "third"}
    )
    assert "Cannot remove 1000 credits" in too_much.content.decode()
    negative_grant = admin_client.post(
        credits_url(wallet), {"action": "grant", "amount": -3, "reason": "x", "reference": "fourth"}
    )
    assert "give a positive amount" in negative_grant.content.decode()
    assert wallet_get(account=wallet.account).balance == 45


def test_add_grants_to_an_account_without_a_wallet(admin_client, make_account):
    account = make_account()
    page = admin_client.get(reverse("admin:rivya_billing_wallet_add")).content.decode()
    data = {
        "account": account.pk,
        "action": "grant",
        "amount": 25,
        "reason": "Trial",
        "reference": form_reference(page),
    }
    response = admin_client.post(reverse("admin:rivya_billing_wallet_add"), data)
    assert response.status_code == 302
    assert wallet_get(account=account).balance == 25
    unknown = admin_client.post(reverse("admin:rivya_billing_wallet_add"), {**data, "account": 10**9, "reference": "y"})
    assert "No such account." in unknown.content.decode()


def test_reconciliation_reports_a_tampered_wallet(admin_client, wallet):
    with connection.cursor() as cursor:  # what only a bug or a hand-edited row could do
        cursor.execute(f"UPDATE {Wallet._meta.db_table} SET balance = 49 WHERE id = %s", [wallet.pk])
    html = admin_client.get(reverse("admin:rivya_billing_wallet_change", args=[wallet.pk])).content.decode()
    assert "✘ 1 problem(s)" in html
    assert "balance 49 but entries add up to 50" in html
    response = admin_client.post(
        reverse("admin:rivya_billing_wallet_changelist"),
        {"action": "check_ledgers", "_selected_action": [wallet.pk]},
        follow=True,
    )
    assert "balance 49 but entries add up to 50" in response.content.decode()


def test_entries_and_holds_are_read_only_and_searchable(admin_client, wallet):
    credits_reserve(account=wallet.account, amount=5, reference="task_xyz")
    entry = LedgerEntry.objects.get(wallet=wallet, type="reserve")
    hold = Hold.objects.get(reference="task_xyz")
    entries = reverse("admin:rivya_billing_ledgerentry_changelist")
    found = admin_client.get(entries, {"q": "task_xyz"}).content.decode()
    assert entry.public_id in found
    assert "welcome" not in found
    assert entry.public_id in admin_client.get(entries, {"q": entry.public_id}).content.decode()
    change = admin_client.get(reverse("admin:rivya_billing_ledgerentry_change", args=[entry.pk])).content.decode()
    assert 'name="_save"' not in change
    assert admin_client.get(reverse("admin:rivya_billing_ledgerentry_add")).status_code == 403
    assert admin_client.post(reverse("admin:rivya_billing_ledgerentry_delete", args=[entry.pk])).status_code == 403
    holds = admin_client.get(reverse("admin:rivya_billing_hold_changelist"), {"q": "task_xyz"}).content.decode()
    assert hold.public_id in holds
