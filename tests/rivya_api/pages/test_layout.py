"""The pages' layout is a setting, and they reverse no URL the apps do not provide or a setting name."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

HOST_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@pytest.fixture
def host_layout(settings, rivya_settings):
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], HOST_TEMPLATES]}]
    rivya_settings("RIVYA_API", BASE_TEMPLATE="host/layout.html")


@pytest.mark.parametrize("path", ["/settings/api-keys", "/settings/credits", "/studio/", "/docs/", "/docs/models"])
def test_pages_render_inside_the_host_layout(member, host_layout, path):
    response = member.client.get(path)
    html = response.content.decode()
    assert response.status_code == 200, path
    assert html.count("<html") == 1
    assert '<header id="host-header">' in html
    assert '<main id="host-main">' in html
    assert 'href="/host.css"' in html, "the host's own head block is kept"
    assert "/static/rivya_api/site.css" in html, "the pages' stylesheet is added to the host's head"
    assert 'class="site-header"' not in html, "Rivya's own layout is not used"


def test_default_layout_is_the_apps_own(member):
    html = member.client.get("/settings/api-keys").content.decode()
    assert 'class="site-header"' in html
    assert html.count("/static/rivya_api/site.css") == 1
    assert "/static/rivya_api/pages.js" in html


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("logout", 'action="/accounts/logout/"'),
        ("/sso/sign-out", 'action="/sso/sign-out"'),
        ("", None),
        ("no-such-url", None),
    ],
)
def test_log_out_button_follows_the_setting(member, rivya_settings, setting, expected):
    rivya_settings("RIVYA_API", LOGOUT_URL=setting)
    response = member.client.get("/settings/api-keys")
    html = response.content.decode()
    assert response.status_code == 200
    if expected:
        assert expected in html
    else:
        assert "Log out" not in html


@pytest.mark.urls("tests.rivya_api.urls_pages_only")
@pytest.mark.parametrize(
    "path", ["/settings/api-keys", "/settings/generations", "/settings/webhooks", "/settings/credits"]
)
def test_settings_pages_render_without_auth_docs_or_studio_urls(member, path):
    """A host that mounts only the settings pages (no django.contrib.auth.urls, docs or Studio)."""
    response = member.client.get(path)
    assert response.status_code == 200, path
    assert "Log out" not in response.content.decode()


@pytest.mark.urls("tests.rivya_api.urls_studio_only")
def test_studio_renders_without_the_settings_pages(member):
    from rivya_api.generations.services import generation_create
    from rivya_billing.services import credits_grant

    credits_grant(account=member.account, amount=50, reference="studio-only")
    generation_create(account=member.account, model_id="rivya-image-1", input={"prompt": "a fox"}, source="studio")
    response = member.client.get("/studio/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "task_" in html, "the task is listed"
    assert "/settings/" not in html
