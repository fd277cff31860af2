"""The one cursor helper: pages never skip or repeat a row, even when every row shares its created_at."""

from datetime import UTC, datetime

import pytest

from rivya_api.common.errors import ApiError
from rivya_api.common.pagination import cursor_page
from rivya_webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

SAME_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)


def _endpoints(account, count):
    return [
        WebhookEndpoint.objects.create(
            account=account,
            url=f"https://hooks.example.com/{n}",
            event_types=["*"],
            created_at=SAME_INSTANT,
            updated_at=SAME_INSTANT,
        )
        for n in range(count)
    ]


def _walk(queryset, *, limit, order=("created_at", "pk")):
    seen, after = [], None
    while True:
        page, has_more = cursor_page(queryset, limit=limit, after=after, order=order)
        seen += [row.public_id for row in page]
        if not has_more:
            return seen
        after = page[-1].public_id


def test_ties_on_created_at_are_broken_by_pk_without_skipping_or_repeating(account):
    made = _endpoints(account, 7)
    newest_first = [endpoint.public_id for endpoint in reversed(made)]
    assert _walk(WebhookEndpoint.objects.all(), limit=3) == newest_first


def test_a_single_unique_order_pages_the_same_way(account):
    made = _endpoints(account, 5)
    assert _walk(WebhookEndpoint.objects.all(), limit=2, order=("pk",)) == [e.public_id for e in reversed(made)]


def test_an_after_outside_the_list_is_refused(account, make_account):
    [theirs] = _endpoints(make_account(), 1)
    _endpoints(account, 1)
    with pytest.raises(ApiError) as refused:
        cursor_page(WebhookEndpoint.objects.filter(account=account), limit=5, after=theirs.public_id)
    assert refused.value.param == "after"
