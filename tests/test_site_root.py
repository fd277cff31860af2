"""The reference project's root and icon: a first visit lands somewhere useful (issue 22, finding 5)."""

from __future__ import annotations

import io

import pytest
from PIL import Image


def test_the_root_leads_to_the_docs(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/docs/"
    docs = client.get("/", follow=True)
    assert docs.status_code == 200
    assert b"Rivya API v1" in docs.content


@pytest.mark.django_db
def test_the_root_leads_a_signed_in_user_to_the_settings(client, django_user_model):
    user = django_user_model.objects.create_user("visitor", password="x")
    client.force_login(user)
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/settings/api-keys")
    assert client.get("/", follow=True).status_code == 200


def test_the_root_is_not_a_debug_page_for_other_methods(client, settings):
    settings.DEBUG = True
    assert client.post("/").status_code == 405


def test_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert "max-age" in response["Cache-Control"]
    with Image.open(io.BytesIO(response.content)) as icon:
        assert icon.format == "ICO"
        assert (32, 32) in icon.info["sizes"]
