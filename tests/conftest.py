"""Fixtures and hooks shared by every suite."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories
from tests.services import require_services

pytest_plugins: list[str] = ["tests.rivya_api.catalog_fixtures", "tests.rivya_api.files_fixtures"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    require_services(item)


@pytest.fixture(autouse=True)
def _rivya_settings_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("rivya_settings")
    if marker is None:
        return
    settings = request.getfixturevalue("settings")
    for namespace, overrides in marker.args[0].items():
        current = dict(getattr(settings, namespace, {}) or {})
        setattr(settings, namespace, {**current, **overrides})


@pytest.fixture
def rivya_settings(settings: Any):
    """``rivya_settings("RIVYA_API", RATE_LIMIT="2/min")`` overrides one namespace for this test."""

    def override(namespace: str, **values: Any) -> None:
        current = dict(getattr(settings, namespace, {}) or {})
        setattr(settings, namespace, {**current, **values})

    return override


@pytest.fixture
def make_account(db: None):
    return factories.account_create


@pytest.fixture
def account(make_account: Any) -> Any:
    return make_account()
