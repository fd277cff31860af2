"""Fixtures of the ledger suites."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from rivya_billing.selectors import ledger_check

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def stress_repeats() -> int:
    """How often the stress tests repeat: ``RIVYA_STRESS_REPEATS`` (``make stress`` sets 20), else once."""
    return max(1, int(os.environ.get("RIVYA_STRESS_REPEATS") or 1))


def assert_ledger_clean() -> None:
    """Every wallet reconciles, by the selector and by the management command (exit code 0)."""
    problems = {check.wallet_id: check.problems for check in ledger_check() if not check.ok}
    assert not problems, problems
    out = io.StringIO()
    call_command("rivya_ledger_check", stdout=out, stderr=io.StringIO())
    assert "Ledger consistent" in out.getvalue()


@pytest.fixture
def thread_connections(transactional_db: None) -> Any:
    """Let every test thread open its own database connection.

    Django's psycopg pool (``DATABASE_POOL_MAX_SIZE``, 10 by default) would make
    threads queue for a handful of shared connections; concurrency tests need one
    connection per thread, so they run with the pool off and restore it after.
    """
    wrapper = connections["default"]
    options = wrapper.settings_dict.get("OPTIONS", {})
    pool = options.get("pool")
    if pool is not None:
        wrapper.close()  # back into the pool, which is then closed
        wrapper.close_pool()
        del options["pool"]
    try:
        yield
    finally:
        if pool is not None:
            wrapper.close()
            options["pool"] = pool


@pytest.fixture
def now() -> datetime:
    return T0
