"""No N+1 on list endpoints: a page of many objects costs the same queries as a page of one.

Each case makes one object, counts the queries of its list request, makes more,
and checks the count stays the same, within an absolute bound (the key lookup is
one query without a shared cache, none with one; the rate-limit counter is no query).
Add a case here with every new list endpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.files.services import file_create
from tests import media

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class ListCase:
    url: str
    make: Callable[[Any, int], None]
    max_queries: int


def _files(account: Any, n: int) -> None:
    for i in range(n):
        file_create(account=account, content=media.png(), filename=f"f{i}.png", purpose="reference")


def _endpoint(account: Any, i: int) -> Any:
    from rivya_webhooks.services import webhook_endpoint_create
    from tests.rivya_webhooks.support import PUBLIC_IP, StaticResolver

    resolver = StaticResolver({"hooks.example.com": [PUBLIC_IP]})
    return webhook_endpoint_create(
        account=account, url=f"https://hooks.example.com/{i}", event_types=["*"], resolver=resolver
    )[0]


def _webhook_endpoints(account: Any, n: int) -> None:
    for i in range(n):
        _endpoint(account, i)


def _webhook_events(account: Any, n: int) -> None:
    """Events with a delivery to each of two endpoints."""
    from rivya_webhooks.services import webhook_endpoint_test

    endpoints = [_endpoint(account, 100 + i) for i in range(2)]
    for i in range(n):
        webhook_endpoint_test(endpoint=endpoints[i % 2])


_grants = itertools.count()


def _ledger_entries(account: Any, n: int) -> None:
    """Each round adds a grant and a held reservation (a line with a hold, one without)."""
    from rivya_billing.services import credits_grant, credits_reserve

    for _ in range(n):
        entry = credits_grant(account=account, amount=5, reference=f"grant:{next(_grants)}")
        credits_reserve(account=account, amount=1, reference=f"task:{entry.public_id}")


def _nothing(account: Any, n: int) -> None:
    """The catalog comes from settings, parsed once; its size does not depend on the account."""


CASES = {
    "models": ListCase("/api/v1/models", _nothing, max_queries=1),
    "files": ListCase("/api/v1/files", _files, max_queries=2),
    "webhook endpoints": ListCase("/api/v1/webhooks", _webhook_endpoints, max_queries=2),
    "webhook events": ListCase("/api/v1/webhook-events", _webhook_events, max_queries=4),
    "credits ledger": ListCase("/api/v1/credits/ledger", _ledger_entries, max_queries=2),
}


def _count(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries)


@pytest.mark.parametrize("name", CASES)
def test_list_queries_do_not_grow_with_the_page(name, api_client, account, django_assert_max_num_queries):
    case = CASES[name]
    case.make(account, 1)
    _count(api_client, case.url)  # warm per-process caches (catalog, content types)
    one = _count(api_client, case.url)
    case.make(account, 5)
    with django_assert_max_num_queries(case.max_queries):
        response = api_client.get(case.url + "?limit=100")
    assert response.status_code == 200
    many = _count(api_client, case.url + "?limit=100")
    assert many == one, f"{case.url}: {one} queries for one object, {many} for six"


def test_the_catalog_is_parsed_once_for_all_requests(api_client):
    from rivya_api.catalog import registry

    api_client.get("/api/v1/models")
    parsed = registry.loaded_catalog()
    for url in ("/api/v1/models", "/api/v1/models/rivya-image-1", "/api/v1/models"):
        assert api_client.get(url).status_code == 200
    assert registry.loaded_catalog() is parsed
