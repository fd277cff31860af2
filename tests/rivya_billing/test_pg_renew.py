"""The one-statement lease renew (``services/pg_renew``) against the portable path, on every database.

The same renews and claims run with ``PG_HOLD_RENEW`` on and off and must return the same
holds, raise the same errors and leave the same rows. On SQLite both settings take the portable
path (the test checks that too). On PostgreSQL, claims of one hold raced from many connections
each get a distinct token, the last of them is the hold's, and only its holder can settle.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from rivya_billing import services
from rivya_billing.exceptions import BillingError
from rivya_billing.models import Hold, LedgerEntry, Wallet
from rivya_billing.services import pg_renew
from rivya_billing.services.leases import _hold_renew_joined
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import T0, assert_ledger_clean
from tests.rivya_billing.test_pg_reserve import row
from tests.rivya_billing.test_pg_settle import other_session

T1 = T0 + timedelta(minutes=5)


def outcome(call: Any) -> Any:
    try:
        hold = call()
    except BillingError as error:
        return type(error).__name__, str(error), getattr(error, "state", None)
    stored = Hold.objects.get(pk=hold.pk)
    assert row(hold) == row(stored)  # the returned hold is what the ORM loads
    assert hold._state.adding is False
    assert hold._state.db == stored._state.db
    return "hold", row(hold)


def renews(make_account: Any) -> list[Any]:
    """Every kind of outcome a renew has: claims, a renew of one's own claim, and each refusal."""
    account, other = make_account(), make_account()
    services.credits_grant(account=account, amount=50, reference="grant", now=T0)
    services.credits_grant(account=other, amount=50, reference="grant", now=T0)
    for reference in ("job", "lapsing", "released", "settled"):
        services.credits_reserve(account=account, amount=5, reference=reference, lease_seconds=120, now=T0)
    services.credits_reserve(account=other, amount=5, reference="theirs", now=T0)
    services.credits_release(account=account, reference="released", now=T0)
    services.credits_settle(account=account, reference="settled", amount=5, now=T0)

    def renew(reference: str, *, at: Any = T1, owner: Any = account, **kwargs: Any) -> Any:
        return outcome(lambda: services.credits_hold_renew(account=owner, reference=reference, now=at, **kwargs))

    return [
        renew("job", lease_seconds=600),  # a claim: token 1
        renew("job", lease_seconds=600),  # a second claim: token 2, the first goes stale
        renew("job", lease_token=2),  # its holder renews (HOLD_RENEW_SECONDS)
        renew("job", lease_token=1),  # the stale holder is refused
        renew("lapsing", at=T0 + timedelta(minutes=3)),  # its lease lapsed
        renew("released"),
        renew("settled"),
        renew("missing"),
        renew("theirs"),  # another account's hold: not found
        renew("theirs", owner=other.pk, lease_token=0),  # by account id, its own token
        [row(hold) for hold in Hold.objects.filter(wallet__account__in=[account, other]).order_by("reference")],
    ]


@pytest.mark.django_db(transaction=True)
def test_the_fast_renew_matches_the_plain_path(make_account, rivya_settings):
    rivya_settings("RIVYA_BILLING", PG_HOLD_RENEW=False)
    assert not pg_renew.enabled()
    plain = renews(make_account)
    rivya_settings("RIVYA_BILLING", PG_HOLD_RENEW=True)
    assert pg_renew.enabled() == (connection.vendor == "postgresql")
    fast = renews(make_account)
    assert fast == plain
    assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_fast_renew_is_one_statement(make_account, django_assert_num_queries):
    account = make_account()
    services.credits_grant(account=account, amount=10, reference="grant")
    services.credits_reserve(account=account, amount=5, reference="job")
    with django_assert_num_queries(1):
        services.credits_hold_renew(account=account, reference="job", lease_seconds=60)
    with transaction.atomic(), django_assert_num_queries(1):  # a generation's claim and heartbeat
        _hold_renew_joined(account=account, reference="job", lease_seconds=60)
    with transaction.atomic(), django_assert_num_queries(3) as queries:  # public: its savepoint kept
        services.credits_hold_renew(account=account, reference="job", lease_seconds=60)
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SAVEPOINT", "UPDATE", "RELEASE"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fast", [True, False], ids=["pg_renew", "plain"])
def test_host_caller_that_tolerates_a_renew_lock_timeout_keeps_its_own_work(make_account, rivya_settings, fast):
    """credits_hold_renew is public: a host that renews inside its own transaction and catches a
    database error there (a lock timeout) keeps its transaction and its work, on both paths."""
    rivya_settings("RIVYA_BILLING", PG_HOLD_RENEW=fast)
    account = make_account()
    services.credits_grant(account=account, amount=10, reference="grant")
    services.credits_reserve(account=account, amount=5, reference="job")
    with other_session() as other:
        other.execute("BEGIN")
        other.execute(f"SELECT 1 FROM {Hold._meta.db_table} WHERE reference = 'job' FOR UPDATE")  # a settle
        with transaction.atomic():
            services.credits_grant(account=account, amount=7, reference="host-work")
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(OperationalError, match="lock timeout"):  # caught: the renew is best effort
                services.credits_hold_renew(account=account, reference="job")
            other.execute("ROLLBACK")
            # The caller's transaction goes on: the same renew again.
            assert services.credits_hold_renew(account=account, reference="job").lease_token == 1
    assert LedgerEntry.objects.filter(reference="host-work").exists()
    assert Wallet.objects.get(account=account).balance == 17
    assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_raced_claims_each_get_their_own_token_and_only_the_last_can_settle(make_account):
    account = make_account()
    services.credits_grant(account=account, amount=10, reference="grant")
    services.credits_reserve(account=account, amount=5, reference="job")
    claims = 24
    run = run_concurrently(claims, lambda _: services.credits_hold_renew(account=account, reference="job").lease_token)
    assert run.unexpected() == []
    tokens = sorted(run.winners())
    assert tokens == list(range(1, claims + 1))
    stale = run_concurrently(
        claims - 1,
        lambda i: services.credits_settle(account=account, reference="job", amount=5, lease_token=tokens[i]),
    )
    assert stale.errors() == {"StaleHoldError": claims - 1}
    settled = services.credits_settle(account=account, reference="job", amount=5, lease_token=tokens[-1])
    assert (settled.state, settled.captured) == ("settled", 5)
    assert Wallet.objects.get(account=account).balance == 5
    assert_ledger_clean()


@pytest.mark.parametrize("seconds", [0, -1, True, 60.0, "60", 2**63])
def test_the_claim_fragment_checks_its_lease_as_the_renew_does(make_account, seconds):
    """``_claim_cte`` (a generation's claim sends it in its own statement) refuses a lease as
    ``credits_hold_renew`` does, before any SQL."""
    with pytest.raises(BillingError) as plain:
        services.credits_hold_renew(account=1, reference="job", lease_seconds=seconds)
    with pytest.raises(BillingError) as joined:
        pg_renew._claim_cte(
            source="s", account="1", reference="'job'", condition="true", lease_seconds=seconds, prefix=""
        )
    assert (type(joined.value), str(joined.value)) == (type(plain.value), str(plain.value))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_claim_fragment_renews_as_a_claim_inside_a_callers_statement(make_account):
    """A pending hold, its lease not lapsed: token + 1 and the new lease; a lapsed one: no row."""
    account = make_account()
    services.credits_grant(account=account, amount=10, reference="grant")
    for reference in ("job", "lapsed"):
        services.credits_reserve(account=account, amount=5, reference=reference, lease_seconds=60)
    lapsed_at = timezone.now() - timedelta(seconds=1)
    Hold.objects.filter(reference="lapsed").update(lease_expires_at=lapsed_at)

    def claim(reference: str) -> Any:
        update, params = pg_renew._claim_cte(
            source="(VALUES (%(a)s, %(r)s)) AS s (a, r)",
            account="s.a",
            reference="s.r",
            condition="s.a IS NOT NULL",
            lease_seconds=600,
            prefix="hold_",
        )
        with connection.cursor() as cursor:
            cursor.execute(f"WITH h AS ({update}) SELECT * FROM h", {"a": account.pk, "r": reference, **params})
            return cursor.fetchall(), params["hold_now"]

    (tokens, now), lapsed = claim("job"), claim("lapsed")
    assert tokens == [(1,)]
    assert Hold.objects.get(reference="job").lease_expires_at == now + timedelta(seconds=600)
    assert lapsed[0] == []
    stored = Hold.objects.get(reference="lapsed")
    assert (stored.state, stored.lease_token, stored.lease_expires_at) == ("pending", 0, lapsed_at)
