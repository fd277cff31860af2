"""Django admin shows idempotency records read-only: staff can look, not forge an outcome."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rivya_api.idempotency import services

pytestmark = pytest.mark.django_db


def test_records_are_listed_and_viewable_but_not_editable(admin_client, account):
    claim = services.idempotency_claim(
        account=account, key="order-42", fingerprint="f", request_method="POST", request_path="/api/v1/files"
    )
    body = b'{"secret": "whsec_shown_only_once"}'
    services.idempotency_complete(record=claim.record, status_code=201, headers={}, body=body)
    changelist = admin_client.get(reverse("admin:rivya_api_idempotencyrecord_changelist"))
    assert changelist.status_code == 200
    assert "order-42" in changelist.content.decode()
    assert "/api/v1/files" in changelist.content.decode()
    change = admin_client.get(reverse("admin:rivya_api_idempotencyrecord_change", args=[claim.record.pk]))
    assert change.status_code == 200
    assert 'name="key"' not in change.content.decode()  # shown, not an input
    assert "whsec_shown_only_once" not in change.content.decode()
    assert str(len(body)) in change.content.decode()
    assert admin_client.get(reverse("admin:rivya_api_idempotencyrecord_add")).status_code == 403
    edit = admin_client.post(reverse("admin:rivya_api_idempotencyrecord_change", args=[claim.record.pk]), {})
    assert edit.status_code == 403
