"""Key services and selectors: secrets never at rest, roll and revoke rules, audit trail, last_used_at."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rivya_api.keys.exceptions import APIKeyError, APIKeyGraceError, APIKeyStateError
from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.selectors import (
    api_key_event_list,
    api_key_for_secret,
    api_key_get,
    api_key_list,
    api_key_predecessors_working,
)
from rivya_api.keys.services import ROLL_GRACE_CHOICES, api_key_create, api_key_revoke, api_key_roll, api_key_touch
from rivya_api.keys.tokens import secret_hash, secret_is_well_formed

pytestmark = pytest.mark.django_db


def test_create_returns_a_secret_shown_once_and_stores_only_hash_prefix_last4(account):
    key, secret = api_key_create(account=account, name="  prod  ")
    assert secret.startswith("rvya_sk_")
    assert len(secret) == len("rvya_sk_") + 43  # 32 random bytes, URL-safe base64
    assert secret_is_well_formed(secret)
    assert key.public_id.startswith("key_")
    assert key.name == "prod"
    assert key.prefix == secret[:12]
    assert key.last4 == secret[-4:]
    assert key.masked == f"{secret[:12]}…{secret[-4:]}"
    assert key.key_hash == secret_hash(secret)
    assert key.status == "active"
    assert not hasattr(APIKey.objects.get(pk=key.pk), "secret")


def test_secrets_are_random():
    from rivya_api.keys.tokens import secret_generate

    assert len({secret_generate() for _ in range(200)}) == 200


def _all_rows_as_text() -> str:
    """Every row of every table of the database, as one string."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_no_secret_in_the_database_or_a_dump_of_it(account, admin_user):
    issued = [api_key_create(account=account, name="one", created_by=admin_user, ip="10.0.0.1")]
    issued.append(api_key_roll(api_key=issued[0][0], grace=timedelta(hours=1), actor=admin_user))
    issued.append(api_key_create(account=account, name="two"))
    api_key_revoke(api_key=issued[2][0])
    rows = _all_rows_as_text()
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    dump = dump.getvalue()
    assert "rivya_api.apikey" in dump  # the dump does contain the keys…
    for key, secret in issued:
        assert key.key_hash in rows  # …and the table was really read
        hidden = secret[12:-4]  # the part of the secret that is never stored
        for text in (rows, dump):
            assert secret not in text
            assert hidden not in text
            assert hidden[:16] not in text


def test_create_validates_name_and_expiry(account):
    with pytest.raises(APIKeyError, match="at most 100"):
        api_key_create(account=account, name="x" * 101)
    with pytest.raises(APIKeyError, match="future"):
        api_key_create(account=account, name="x", expires_at=timezone.now() - timedelta(seconds=1))
    assert not APIKey.objects.exists()


def test_create_writes_an_audit_event(account, admin_user):
    key, _ = api_key_create(account=account, name="k", created_by=admin_user, ip="203.0.113.9", source="settings")
    event = key.events.get()
    assert event.action == "created"
    assert event.actor == admin_user
    assert event.account_id == account.pk
    assert event.ip == "203.0.113.9"
    assert event.source == "settings"
    assert key.created_by == admin_user


def test_roll_issues_a_replacement_and_schedules_the_old_key(account, admin_user):
    now = timezone.now()
    expiry = now + timedelta(days=30)
    old, old_secret = api_key_create(account=account, name="prod", expires_at=expiry, now=now)
    new, new_secret = api_key_roll(api_key=old, grace=ROLL_GRACE_CHOICES["24h"], actor=admin_user, ip="::1", now=now)
    assert new_secret != old_secret
    assert new.name == "prod"
    assert new.account_id == account.pk
    assert new.expires_at == expiry  # the replacement keeps the key's own expiry
    assert new.created_by == admin_user
    old.refresh_from_db()
    assert old.replaced_by == new
    assert old.expires_at == now + timedelta(hours=24)
    assert old.status_at(now + timedelta(hours=23)) == "rolling"  # works, but is not "active": it has an end
    assert old.status_at(now + timedelta(hours=24)) == "expired"
    assert new.status_at(now + timedelta(hours=23)) == "active"
    rolled = old.events.get(action="rolled")
    assert rolled.details == {
        "replaced_by": new.public_id,
        "grace_seconds": 86400,
        "expires_at": (now + timedelta(hours=24)).isoformat(),
    }
    assert (rolled.actor, rolled.ip) == (admin_user, "::1")
    assert new.events.get().details == {"replaces": old.public_id}


def test_roll_never_extends_an_earlier_expiry(account):
    now = timezone.now()
    old, _ = api_key_create(account=account, name="k", expires_at=now + timedelta(hours=2), now=now)
    api_key_roll(api_key=old, grace=timedelta(days=7), now=now)
    old.refresh_from_db()
    assert old.expires_at == now + timedelta(hours=2)


@pytest.mark.parametrize("grace", [timedelta(seconds=-1), timedelta(days=7, seconds=1)])
def test_roll_rejects_a_grace_outside_0_to_7_days(api_key, grace):
    with pytest.raises(APIKeyGraceError):
        api_key_roll(api_key=api_key[0], grace=grace)
    assert APIKey.objects.count() == 1


def test_roll_refuses_revoked_expired_and_already_rolled_keys(account):
    revoked, _ = api_key_create(account=account, name="r")
    api_key_revoke(api_key=revoked)
    with pytest.raises(APIKeyStateError, match="revoked"):
        api_key_roll(api_key=revoked)
    rolled, _ = api_key_create(account=account, name="x")
    api_key_roll(api_key=rolled, grace=timedelta(hours=1))
    with pytest.raises(APIKeyStateError, match="already been rolled"):
        api_key_roll(api_key=rolled)
    later = timezone.now() + timedelta(hours=2)
    with pytest.raises(APIKeyStateError, match="expired"):
        api_key_roll(api_key=rolled, now=later)
    assert APIKey.objects.count() == 3
    assert APIKeyEvent.objects.filter(action="rolled").count() == 1


def test_revoke_is_immediate_and_idempotent(api_key, admin_user):
    key, _ = api_key
    api_key_revoke(api_key=key, actor=admin_user, ip="198.51.100.7")
    assert key.status == "revoked"
    first = key.revoked_at
    api_key_revoke(api_key=key, actor=admin_user)
    key.refresh_from_db()
    assert key.revoked_at == first
    event = key.events.get(action="revoked")
    assert (event.actor, event.ip) == (admin_user, "198.51.100.7")


def test_revoke_with_predecessors_revokes_every_key_of_the_chain_still_working(account, admin_user, client):
    """Issue 22 (4): revoking a leaked key can take the older secrets still in their grace period with it."""
    now = timezone.now()
    first, first_secret = api_key_create(account=account, name="prod", now=now)
    second, second_secret = api_key_roll(api_key=first, grace=timedelta(days=7), now=now)
    third, third_secret = api_key_roll(api_key=second, grace=timedelta(days=7), now=now)
    spent, _ = api_key_create(account=account, name="old", now=now - timedelta(days=9))
    api_key_roll(api_key=spent, grace=timedelta(hours=1), now=now - timedelta(days=8))  # its grace is over
    assert [k.public_id for k in api_key_predecessors_working(api_key=third)] == [second.public_id, first.public_id]
    assert api_key_predecessors_working(api_key=first) == []

    api_key_revoke(api_key=third, actor=admin_user, predecessors=True)
    for key in (first, second, third):
        key.refresh_from_db()
        assert key.status == "revoked"
    for secret in (first_secret, second_secret, third_secret):
        response = client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert (response.status_code, response.json()["error"]["code"]) == (401, "api_key_revoked")
    assert first.events.get(action="revoked").details == {"revoked_with": third.public_id}
    assert third.events.get(action="revoked").details == {}
    assert api_key_predecessors_working(api_key=third) == []


def test_revoke_without_predecessors_leaves_the_rolled_key_working(account, client):
    old, old_secret = api_key_create(account=account, name="prod")
    new, _ = api_key_roll(api_key=old, grace=timedelta(hours=1))
    api_key_revoke(api_key=new)
    old.refresh_from_db()
    assert old.status == "rolling"
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {old_secret}").status_code == 200
    # Asking again, with predecessors, closes it even though the replacement is revoked already.
    api_key_revoke(api_key=new, predecessors=True)
    old.refresh_from_db()
    assert old.status == "revoked"


def test_selectors_are_scoped_to_the_account(make_account, make_api_key):
    mine, theirs = make_account(), make_account()
    first, _ = make_api_key(mine, name="a")
    second, second_secret = make_api_key(mine, name="b")
    other, _ = make_api_key(theirs, name="c")
    assert list(api_key_list(account=mine)) == [second, first]
    assert api_key_get(account=mine, public_id=first.public_id) == first
    assert api_key_get(account=mine, public_id=other.public_id) is None
    assert api_key_for_secret(secret=second_secret) == second
    assert api_key_for_secret(secret="rvya_sk_nope") is None
    api_key_revoke(api_key=first)
    assert [e.action for e in api_key_event_list(api_key=first)] == ["revoked", "created"]


@pytest.mark.rivya_settings({"RIVYA_API": {"KEY_LAST_USED_INTERVAL": 1}})
def test_touch_writes_last_used_at_at_most_once_per_interval(api_key):
    key, _ = api_key
    start = timezone.now()
    assert api_key_touch(api_key=key, now=start) is True
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert api_key_touch(api_key=key, now=start + timedelta(milliseconds=500)) is False
    assert len(queries) == 0  # elected by the cache, not by asking the database
    key.refresh_from_db()
    assert key.last_used_at == start
    time.sleep(1.1)  # the cache guard's own expiry runs on the cache server's clock
    later = start + timedelta(seconds=2)
    assert api_key_touch(api_key=key, now=later) is True
    key.refresh_from_db()
    assert key.last_used_at == later


def test_touch_bound_holds_without_the_cache_guard(api_key, settings):
    """Where each process has its own cache, the conditional UPDATE still keeps the bound."""
    key, _ = api_key
    now = timezone.now()
    assert api_key_touch(api_key=key, now=now) is True
    from django.core.cache import caches

    caches["default"].delete(f"rivya_api:apikey-used:{key.public_id}")  # as if another process
    assert api_key_touch(api_key=key, now=now + timedelta(seconds=30)) is False
    key.refresh_from_db()
    assert key.last_used_at == now
