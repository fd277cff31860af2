"""The documentation pages explain resumable chat streams and cancel."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_authentication_page_documents_resume_cancel_and_stream_retries(client):
    html = client.get("/docs/authentication").content.decode()
    assert 'id="chat-streams"' in html
    for text in ("Last-Event-ID", "/chat/sessions/$SESSION_ID/stream", "last_event_id", "/cancel", "[DONE]", "410"):
        assert text in html, text


def test_quick_start_links_to_the_chat_streams_section(client):
    html = client.get("/docs/quickstart").content.decode()
    assert "/docs/authentication#chat-streams" in html
    assert "usage.credits" in html
