"""Fixtures and hooks shared by every suite."""

from __future__ import annotations

from concurrent.futures import wait
from typing import Any

import pytest

from tests import factories
from tests.services import require_services

pytest_plugins: list[str] = [
    "tests.rivya_api.catalog_fixtures",
    "tests.rivya_api.files_fixtures",
    "tests.rivya_api.pages_fixtures",
]


def pytest_runtest_setup(item: pytest.Item) -> None:
    require_services(item)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect, not skip, tests of SQLite's own paths on another database: there they would test
    nothing, and a skip in CI would hide that. `make test` runs them on SQLite in a line of their own."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        return
    dropped = [item for item in items if item.get_closest_marker("sqlite")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("sqlite")]


# Longer than any test's background job takes; shorter than SQLite's busy timeout (30 s), which
# would end a job waiting on a non-transactional test's write lock as if it had finished.
BACKGROUND_WAIT_SECONDS = 20


@pytest.fixture(autouse=True)
def _background_work_ends_with_its_test():
    """Jobs a test hands to the in-process executor (no broker: the SQLite default) end within it.

    One left running ran on in later tests, on their rows (SQLite reuses a pk after a rollback)
    and under their monkeypatches, and failed them now and then. A job still running after the
    wait fails the test that started it: in a non-transactional test it waits for the test's own
    transaction (SQLite's one write lock), so it can only run after the test, in another one.
    """
    from rivya_api import background

    started: list[tuple[str, Any]] = []
    submit = background.submit

    def tracked(task: Any, *args: Any, **kwargs: Any) -> Any:
        future = submit(task, *args, **kwargs)
        started.append((task.name, future))
        return future

    with pytest.MonkeyPatch.context() as patch:  # its own: a test's monkeypatch.undo() leaves it
        patch.setattr(background, "submit", tracked)
        yield
    _, pending = wait([future for _, future in started], timeout=BACKGROUND_WAIT_SECONDS)
    if pending:
        names = sorted({name for name, future in started if future in pending})
        pytest.fail(
            f"{len(pending)} in-process background job(s) this test started still run after "
            f"{BACKGROUND_WAIT_SECONDS} s: {', '.join(names)} (a job waiting for this test's own "
            "transaction? patch services.enqueue_on_commit, or commit first: transaction=True)",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Users made by fixtures get real hashes, just not PBKDF2's deliberate half second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


@pytest.fixture
def make_api_key(db: None):
    """``make_api_key(account, **kwargs)`` -> ``(key, secret)`` through ``api_key_create``."""
    from rivya_api.keys.services import api_key_create

    def make(account: Any, name: str = "test key", **kwargs: Any) -> tuple[Any, str]:
        return api_key_create(account=account, name=name, **kwargs)

    return make


@pytest.fixture
def api_key(account: Any, make_api_key: Any) -> tuple[Any, str]:
    """``(key, secret)``: an active API key of ``account``."""
    return make_api_key(account)


@pytest.fixture
def make_api_client(make_api_key: Any):
    """``make_api_client(account)`` -> a DRF ``APIClient`` sending a fresh key of that account.

    The client's ``api_key`` and ``secret`` attributes hold the key it sends.
    """
    from rest_framework.test import APIClient

    def make(account: Any, **key_kwargs: Any) -> APIClient:
        key, secret = make_api_key(account, **key_kwargs)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        client.api_key, client.secret = key, secret
        return client

    return make


@pytest.fixture
def api_client(account: Any, api_key: tuple[Any, str]):
    """A DRF ``APIClient`` with ``Authorization: Bearer <secret>`` of ``api_key`` (for ``account``)."""
    from rest_framework.test import APIClient

    key, secret = api_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client.api_key, client.secret = key, secret
    return client


@pytest.fixture
def in_process_executor():
    """Force the broker-less mode (background work in this process) even when this run has REDIS_URL."""
    from config.celery import app

    previous = app.conf.get("rivya_in_process")
    app.conf.rivya_in_process = True
    yield
    app.conf.rivya_in_process = previous


@pytest.fixture(autouse=True)
def _generation_finish_hints_end_with_their_test():
    """``pg_finish.endpoint_seen`` is per process: an account pk a later test reuses starts unknown."""
    from rivya_api.generations import pg_finish

    pg_finish.endpoint_seen.clear()
    yield
    pg_finish.endpoint_seen.clear()
