"""Django admin is for the platform's staff: a logged-in customer reaches none of it.

Checked over every model any app registers, so models added later are covered too.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db


def admin_urls() -> list[str]:
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        opts = model._meta
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[1]))
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    return urls


def test_a_customer_is_sent_to_the_staff_login_from_every_admin_page(member):
    urls = admin_urls()
    assert len(urls) > 4  # the rivya models are registered
    for url in urls:
        response = member.client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("admin:login")), url
    # Nor can they post an action.
    opts = next(iter(admin.site._registry))._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    response = member.client.post(changelist, {"action": "delete_selected", "_selected_action": ["1"]})
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
