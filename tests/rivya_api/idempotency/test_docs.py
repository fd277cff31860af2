"""The docs section the API Authentication page includes states the policy."""

from __future__ import annotations

from django.template.loader import render_to_string


def test_docs_section_renders_the_policy():
    html = render_to_string("rivya_api/docs/idempotency.html")
    for fact in (
        "Idempotency-Key",
        "Idempotent-Replayed: true",
        "idempotency_key_in_flight",
        "Retry-After",
        "idempotency_key_reused",
        "idempotency_key_invalid",
        "24 hours",
    ):
        assert fact in html
