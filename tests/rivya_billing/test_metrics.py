"""Committed ledger operations are counted in Prometheus (``rivya_billing.metrics``); rolled-back ones are not."""

from __future__ import annotations

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

from rivya_billing import services

pytestmark = pytest.mark.django_db

OPERATIONS = ("grant", "reserve", "settle", "release")


def counts() -> dict[str, tuple[float, float]]:
    return {
        op: (
            REGISTRY.get_sample_value("rivya_ledger_operations_total", {"operation": op}) or 0.0,
            REGISTRY.get_sample_value("rivya_ledger_credits_total", {"operation": op}) or 0.0,
        )
        for op in OPERATIONS
    }


def deltas(before: dict, after: dict) -> dict[str, tuple[float, float]]:
    return {op: (after[op][0] - before[op][0], after[op][1] - before[op][1]) for op in OPERATIONS}


def test_committed_operations_are_counted_by_type(account, django_capture_on_commit_callbacks):
    before = counts()
    with django_capture_on_commit_callbacks(execute=True):
        services.credits_grant(account=account, amount=100, reference="grant:1")
        services.credits_reserve(account=account, amount=30, reference="task_1")
        services.credits_settle(account=account, reference="task_1", amount=20)
    assert deltas(before, counts()) == {
        "grant": (1, 100),
        "reserve": (1, 30),
        "settle": (1, 20),
        "release": (1, 10),
    }


def test_rolled_back_operations_are_not_counted(account, django_capture_on_commit_callbacks):
    services.credits_grant(account=account, amount=100, reference="grant:1")
    before = counts()

    def work_that_fails() -> None:
        with transaction.atomic():
            services.credits_reserve(account=account, amount=30, reference="task_1")
            raise RuntimeError("the caller's work failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        work_that_fails()
    assert deltas(before, counts())["reserve"] == (0, 0)
