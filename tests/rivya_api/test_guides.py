"""The human documentation pages: rendered, self-contained, and generated from the catalog."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders

PAGES = [
    "/docs/",
    "/docs/quickstart",
    "/docs/authentication",
    "/docs/credits",
    "/docs/models",
    "/docs/sdk",
    "/docs/webhooks",
]


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_on_the_base_layout_without_external_resources(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="site-header"' in html  # the shared layout
    for reference in _references(html):
        assert not re.match(r"^(https?:)?//", reference), f"{path} loads {reference}"
        if reference.startswith("/static/"):
            assert finders.find(reference.removeprefix("/static/")), reference
    assert "cdn" not in html.lower()


def test_pages_link_to_each_other_and_the_api_reference(client):
    html = client.get("/docs/").content.decode()
    for target in [
        "/docs/quickstart",
        "/docs/authentication",
        "/docs/credits",
        "/docs/models",
        "/docs/sdk",
        "/docs/webhooks",
        "/api/v1/docs",
        "/api/v1/openapi.json",
    ]:
        assert f'href="{target}' in html, target


def test_model_reference_is_generated_from_the_catalog(client, sample_catalog):
    html = client.get("/docs/models").content.decode()
    for model_id in ("test-image", "test-video", "test-audio", "test-chat"):
        assert f'id="{model_id}"' in html
    assert 'id="test-missing"' not in html  # not available here, so not documented
    # Parameters with their defaults and constraints, the price and an example request.
    image = html.split('id="test-image"')[1].split("</section>")[0]
    assert "<code>width</code>" in image
    assert "<code>512</code>" in image
    assert "≥ 64; ≤ 2048" in image
    assert "file id (image/png, image/jpeg)" in image
    assert "plus, by width × height" in image
    assert "costs <strong>2\n    credits</strong>" in image
    assert "http://testserver/api/v1/generations" in image
    assert "&quot;model&quot;: &quot;test-image&quot;" in image
    chat = html.split('id="test-chat"')[1].split("</section>")[0]
    assert "http://testserver/api/v1/chat/completions" in chat
    assert "per 1,000 output tokens" in chat
    for secret in ("TestProvider", "tests.rivya_api", "palette", "upstream-secret-model-name"):
        assert secret not in html


def test_examples_use_the_public_base_url(client, rivya_settings, sample_catalog):
    rivya_settings("RIVYA_API", PUBLIC_BASE_URL="https://api.rivya.example")
    html = client.get("/docs/quickstart").content.decode()
    assert 'export RIVYA_API="https://api.rivya.example/api/v1"' in html
    assert "&quot;model&quot;: &quot;test-image&quot;" in html or '"model": "test-image"' in html
    assert 'base_url="https://api.rivya.example/api/v1"' in html
    assert "test-chat" in html


def test_authentication_page_covers_keys_rotation_storage_and_idempotency(client):
    html = client.get("/docs/authentication").content.decode()
    for anchor in ("keys", "rotation", "storing", "rate-limits", "idempotency"):
        assert f'id="{anchor}"' in html
    assert "Authorization: Bearer" in html
    assert 'data-owner="idempotency"' in html
    for code in ("missing_api_key", "invalid_api_key", "api_key_revoked", "api_key_expired"):
        assert code in html


def test_credits_page_states_the_failure_and_refund_rules(client):
    html = client.get("/docs/credits").content.decode()
    for text in (
        "available",
        "held",
        "Reserve",
        "Settle",
        "Release",
        "insufficient_credits",
        "x-should-retry: false",
        "released in full",
        "rounded up to a whole credit",
        "dry_run",
        "max_credits",
    ):
        assert text in html, text


@pytest.mark.urls("tests.rivya_api.urls_api_only")
def test_base_layout_renders_where_the_docs_are_not_mounted():
    from django.template.loader import render_to_string

    html = render_to_string("rivya_api/base.html")
    assert 'href="/api/v1/docs"' in html
    assert "/docs/quickstart" not in html


@pytest.mark.parametrize("path", PAGES)
def test_no_command_needs_a_tool_a_stock_debian_lacks(client, path):
    """Issue 22 (8): uuidgen is not on Debian by default; jq is offered only as an option."""
    html = client.get(path).content.decode()
    assert "uuidgen" not in html
    for block in re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", html, re.S):
        assert "| jq" not in block, block


def test_sdk_page_says_how_to_install_from_this_repository_and_load_it_both_ways(client):
    html = client.get("/docs/sdk").content.decode()
    assert "make sdk-pack" in html
    assert "npm install /path/to/rivya/sdk/typescript/rivya-sdk.tgz" in html
    assert "npm install @rivya/sdk" not in html  # not published: the command would be a 404
    assert 'import Rivya from "@rivya/sdk"' in html
    assert 'const { Rivya } = require("@rivya/sdk")' in html
    for name in ("MaxCreditsExceededError", "InsufficientCreditsError", "max_credits_exceeded"):
        assert name in html
    assert 'export RIVYA_BASE_URL="http://testserver/api/v1"' in html


def test_webhooks_page_covers_event_types_verification_and_local_testing(client):
    from rivya_webhooks.registry import event_types

    html = client.get("/docs/webhooks").content.decode()
    for event_type in event_types():
        assert f"<code>{event_type.name}</code>" in html
    assert "<code>*</code>" in html
    assert "from standardwebhooks.webhooks import Webhook, WebhookVerificationError" in html
    assert "verifyWebhook(Buffer.concat(chunks), req.headers" in html
    for anchor in ("endpoints", "delivery", "python", "node", "retries", "local"):
        assert f'id="{anchor}"' in html
    assert "RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true make run" in html
    assert "/webhooks/we_…/test" in html
