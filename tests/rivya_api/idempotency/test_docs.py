"""The API Authentication page states the idempotency policy, with the configured retention."""

from __future__ import annotations

import pytest


def test_authentication_page_states_the_policy(client):
    html = client.get("/docs/authentication").content.decode()
    section = html[html.index('<section id="idempotency"') :]
    section = section[: section.index("</section>")]
    for fact in (
        "Idempotency-Key",
        "Idempotent-Replayed: true",
        "409 idempotency_key_in_flight",
        "Retry-After",
        "422 idempotency_key_reused",
        "400 idempotency_key_invalid",
        "24 hours",
        "roll a key",
    ):
        assert fact in section, fact


@pytest.mark.rivya_settings({"RIVYA_API": {"IDEMPOTENCY_RETENTION_SECONDS": 48 * 3600}})
def test_retention_on_the_page_follows_the_setting(client):
    assert "48 hours" in client.get("/docs/authentication").content.decode()
