"""An object of another model passed as the account is refused on every path, never taken for an account's pk.

The plain path's ORM lookups (``wallet__account=``) refuse it with ``ValueError``; the fast paths
(``pg_reserve``, ``pg_settle``, ``pg_renew``, ``sqlite_holds``) send the pk themselves, so they must
refuse it the same way: a host whose account-for-user hook returns the wrong model would otherwise
reserve on, settle or renew the hold of whichever account has the same pk.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from rivya_billing import services
from rivya_billing.models import Hold, LedgerEntry

FAST_PATHS = {"PG_RESERVE": True, "PG_SETTLE": True, "PG_HOLD_RENEW": True, "SQLITE_HOLDS": True}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_an_object_of_another_model_is_refused_and_nothing_is_written(fast, make_account, rivya_settings):
    rivya_settings("RIVYA_BILLING", **{name: fast for name in FAST_PATHS})
    victim = make_account()
    services.credits_grant(account=victim, amount=100, reference="g")
    services.credits_reserve(account=victim, amount=10, reference="r")
    not_an_account = Group.objects.create(id=victim.pk, name="not an account")
    before = list(LedgerEntry.objects.order_by("pk").values_list("type", "amount"))
    calls = [
        lambda: services.credits_reserve(account=not_an_account, amount=5, reference="s"),
        lambda: services.credits_settle(account=not_an_account, reference="r", amount=5),
        lambda: services.credits_hold_renew(account=not_an_account, reference="r", lease_seconds=60),
        lambda: services.credits_release(account=not_an_account, reference="r"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="Must be"):
            call()
    assert list(LedgerEntry.objects.order_by("pk").values_list("type", "amount")) == before
    hold = Hold.objects.get(reference="r")
    assert (hold.state, hold.lease_token) == ("pending", 0)
