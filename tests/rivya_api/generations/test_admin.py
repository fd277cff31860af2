"""Django admin for generation tasks: found by public id, never edited, canceled through the service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from rivya_api.generations import services
from rivya_api.generations.models import GenerationTask
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]

CHANGELIST = reverse("admin:rivya_api_generationtask_changelist")


@pytest.fixture
def tasks(account, django_capture_on_commit_callbacks):
    credits_grant(account=account, amount=50, reference="grant")
    with django_capture_on_commit_callbacks(execute=False):
        return [
            services.generation_create(account=account, model_id="test-image", input={"prompt": str(index)})
            for index in range(2)
        ]


def test_search_by_public_id_and_read_only(admin_client, tasks):
    first, second = tasks
    found = admin_client.get(CHANGELIST, {"q": first.public_id}).content.decode()
    assert first.public_id in found
    assert second.public_id not in found
    page = admin_client.get(reverse("admin:rivya_api_generationtask_change", args=[first.pk])).content.decode()
    assert first.public_id in page
    assert 'name="_save"' not in page
    assert admin_client.get(reverse("admin:rivya_api_generationtask_add")).status_code == 403
    assert admin_client.post(reverse("admin:rivya_api_generationtask_delete", args=[first.pk])).status_code == 403


def test_cancel_action_releases_through_the_service(admin_client, account, tasks, django_capture_on_commit_callbacks):
    first, second = tasks
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            CHANGELIST, {"action": "cancel_tasks", "_selected_action": [first.pk]}, follow=True
        )
    assert "Asked 1 task(s) to stop." in response.content.decode()
    first.refresh_from_db()
    assert (first.status, first.released) == ("canceled", 4)
    assert GenerationTask.objects.get(pk=second.pk).status == "queued"
    assert wallet_get(account=account).held == 4
