"""Every sweep handles rows one at a time: one row that raises is logged with its id and counted, and
the rows after it are still handled (issue 21, item 1). The failing row is injected by making the
per-row step raise for that row only; everything else is the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_billing import metrics as billing_metrics
from rivya_billing.models import Hold, HoldState
from rivya_billing.services import credits_grant, credits_reserve
from rivya_billing.services import holds as holds_module
from rivya_billing.services.holds import credits_expire_lapsed_holds

pytestmark = pytest.mark.django_db


def _count(counter, job: str) -> float:
    return counter.labels(job=job)._value.get()


def test_the_holds_sweep_moves_past_a_hold_it_cannot_expire(make_account, monkeypatch, caplog):
    accounts = [make_account() for _ in range(3)]
    for index, account in enumerate(accounts):
        credits_grant(account=account, amount=10, reference=f"grant-{index}")
        credits_reserve(account=account, amount=5, reference=f"job-{index}", lease_seconds=1)
    poisoned = Hold.objects.get(reference="job-0")
    real = holds_module._expire_locked

    def expire(hold, **kwargs):
        if hold.pk == poisoned.pk:
            raise RuntimeError("poisoned row")
        return real(hold, **kwargs)

    monkeypatch.setattr(holds_module, "_expire_locked", expire)
    before = _count(billing_metrics.SWEEP_ROW_FAILURES, "expire_lapsed_holds")
    assert credits_expire_lapsed_holds(now=timezone.now() + timedelta(minutes=5)) == 2
    assert Hold.objects.get(reference="job-1").state == HoldState.EXPIRED
    assert Hold.objects.get(reference="job-2").state == HoldState.EXPIRED
    assert Hold.objects.get(pk=poisoned.pk).state == HoldState.PENDING
    assert _count(billing_metrics.SWEEP_ROW_FAILURES, "expire_lapsed_holds") == before + 1
    assert str(poisoned.pk) in caplog.text
