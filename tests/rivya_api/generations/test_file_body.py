"""The file object a generation embeds (its outputs), built by ``file_body`` against ``FileOutputSerializer``.

``RIVYA_API["FILE_BODY_PLAIN"]`` chooses between them. The function must give what the serializer
gives, key for key in the same order (the same JSON text), for every shape of file (deleted,
expired, no dimensions, audio with a duration, with and without a request for the URL's origin),
and a generation's body and its webhook event must be the same either way.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.test import RequestFactory

from rivya_api.files.models import File
from rivya_api.files.serializers import FileOutputSerializer, file_body, file_object
from rivya_api.generations import services
from rivya_api.generations.presenters import generation_payload
from rivya_billing import services as billing
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_api.generations.test_mark_succeeded import PIXEL

WHEN = datetime(2026, 5, 1, 9, 31, 0, 123456, tzinfo=UTC)


def a_file(**changes):
    values = {
        "public_id": "file_abc",
        "purpose": File.Purpose.GENERATION_OUTPUT,
        "kind": "image",
        "filename": "a.png",
        "content_type": "image/png",
        "size": 68,
        "sha256": "0" * 64,
        "width": 1,
        "height": 1,
        "duration": None,
        "storage_name": "rivya/x/file_abc.png",
        "created_at": WHEN - timedelta(hours=1),
        "expires_at": WHEN + timedelta(days=7),
    }
    return File(**{**values, **changes})


@pytest.mark.parametrize(
    "file",
    [
        a_file(),
        a_file(deleted_at=WHEN - timedelta(minutes=1)),
        a_file(expires_at=WHEN - timedelta(seconds=1)),  # expired, not swept yet
        a_file(expires_at=WHEN + timedelta(seconds=30)),  # the URL's expiry is the file's
        a_file(width=None, height=None, kind="audio", content_type="audio/wav", duration=2, purpose="reference"),
        a_file(duration=1.5, kind="video", content_type="video/mp4", filename="é ü.mp4"),
    ],
    ids=["image", "deleted", "expired", "expiring", "audio", "video"],
)
@pytest.mark.parametrize("with_request", [False, True])
def test_file_body_is_the_serializers_output(file, with_request):
    request = RequestFactory().get("/", HTTP_HOST="testserver") if with_request else None
    with mock.patch("django.utils.timezone.now", return_value=WHEN):
        plain = file_body(file, request)
        serialized = FileOutputSerializer(file, context={"request": request}).data
    assert json.dumps(plain) == json.dumps(serialized)
    assert list(plain) == list(FileOutputSerializer().fields)  # no field of the serializer left out


def test_the_switch_chooses(rivya_settings):
    file = a_file(duration=2)  # an int duration: the serializer's FloatField makes it 2.0
    rivya_settings("RIVYA_API", FILE_BODY_PLAIN=True)
    with mock.patch("rivya_api.files.serializers.file_body", return_value={"plain": True}):
        assert file_object(file) == {"plain": True}
        rivya_settings("RIVYA_API", FILE_BODY_PLAIN=False)
        assert file_object(file)["duration"] == 2.0


@pytest.mark.django_db(transaction=True)
@pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS, "GENERATION_PROVIDER_PROCESS": False}})
def test_a_generation_and_its_event_are_the_same_either_way(account, rivya_settings, monkeypatch):
    from rivya_api.generations import finishing

    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)

    billing.credits_grant(account=account, amount=100, reference="grant")
    bodies = {}
    for plain in (True, False):
        rivya_settings("RIVYA_API", FILE_BODY_PLAIN=plain)
        task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
        task = services.generation_start(task_pk=task.pk)
        with mock.patch("django.utils.timezone.now", return_value=WHEN):
            done = finishing.generation_succeed(task=task, outputs=[PIXEL])
            body = generation_payload(done, outputs=list(done.outputs.all()))
        event = WebhookEvent.objects.get(account=account, type="generation.succeeded", data__id=task.public_id)
        bodies[plain] = (_anonymous(body, done), _anonymous(event.data, done))
    assert bodies[True] == bodies[False]
    assert bodies[True][1]["outputs"][0]["object"] == "file"


def _anonymous(body, task):
    """``body`` without what differs between two tasks: their ids, times and signed URLs."""
    text = json.dumps(body).replace(task.public_id, "task")
    for file in task.outputs.all():
        text = text.replace(file.public_id, "file")
    value = json.loads(text)
    for output in value["outputs"]:
        output["url"] = output["url"] and output["url"].split("?")[0]
    return {k: v for k, v in value.items() if not k.endswith("_at") and k != "sequence"}
