"""Studio's form: fields drawn from the model's JSON Schema, a price before submitting (issue 22, finding 9).

The price is a dry run (``generation_quote``, what the API's ``dry_run: true`` answers): the
JSON endpoint ``/studio/price`` that the page's script calls as the form changes, and the
"Check price" button that does the same without JavaScript. Neither reserves or creates anything.
"""

from __future__ import annotations

import re

import pytest

from rivya_api.generations.models import GenerationTask
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant

LOCAL = "rivya_api.catalog.local_models.LOCAL_MODELS"
pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": LOCAL}})]

STUDIO = "/studio/"
PRICE = "/studio/price"


@pytest.fixture
def funded(member):
    credits_grant(account=member.account, amount=5, reference="test-grant")
    return member


def test_each_models_parameters_are_fields_drawn_from_its_schema(funded):
    html = funded.client.get(STUDIO).content.decode()
    image = html.split('data-model="rivya-image-1"', 1)[1].split("</fieldset>", 1)[0]
    # Integers and numbers: number inputs with the schema's bounds, step and default.
    width = re.search(r"<input[^>]*name=\"rivya-image-1.width\"[^>]*>", image).group(0)
    for attribute in ('type="number"', 'min="64"', 'max="1024"', 'step="1"', 'placeholder="512"'):
        assert attribute in width, (attribute, width)
    strength = re.search(r"<input[^>]*name=\"rivya-image-1.reference_strength\"[^>]*>", image).group(0)
    assert 'step="any"' in strength and 'max="1"' in strength  # noqa: PT018
    # An enum is a choice, with the default named; a file parameter asks for a file id.
    assert '<select name="rivya-image-1.format"' in image
    assert "Default (png)" in image and '<option value="webp">' in image  # noqa: PT018
    assert 'placeholder="file_…"' in image
    assert "Width in pixels." in image  # the schema's description is the help text
    assert 'name="rivya-image-1.prompt"' not in image  # the prompt has its own field
    # Every generation model has its set; the video model's step follows multipleOf.
    video = html.split('data-model="rivya-video-1"', 1)[1].split("</fieldset>", 1)[0]
    assert re.search(r'name="rivya-video-1.width"[^>]*step="2"|step="2"[^>]*name="rivya-video-1.width"', video)
    assert 'data-model="rivya-audio-1"' in html
    assert 'data-model="rivya-chat-1"' not in html
    assert "Advanced: parameters as JSON" in html


def test_the_fields_of_the_chosen_model_make_the_input(funded, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = funded.client.post(
            STUDIO,
            {
                "model": "rivya-image-1",
                "prompt": "a fox",
                "rivya-image-1.width": "256",
                "rivya-image-1.height": "",  # empty: the model's default
                "rivya-image-1.format": "webp",
                "rivya-image-1.reference_strength": "0.25",
                "rivya-video-1.width": "640",  # another model's field: not sent
                "parameters": '{"seed": 7}',
            },
        )
    assert response.status_code == 302, response.content.decode()
    task = GenerationTask.objects.get(account=funded.account)
    assert task.input["prompt"] == "a fox"
    assert task.input["width"] == 256
    assert task.input["format"] == "webp"
    assert task.input["reference_strength"] == 0.25
    assert task.input["seed"] == 7
    assert task.input["height"] == 512  # the schema's default, filled in by the catalog


def test_a_refused_field_value_is_shown_at_its_field(funded):
    response = funded.client.post(STUDIO, {"model": "rivya-image-1", "prompt": "a fox", "rivya-image-1.width": "5000"})
    assert response.status_code == 400
    html = response.content.decode()
    field = html.split('name="rivya-image-1.width"', 1)[1].split("</div>", 1)[0]
    assert "field-error" in field
    assert "1024" in field
    assert not GenerationTask.objects.exists()


def test_the_price_is_a_dry_run_of_the_form(funded):
    small = funded.client.post(PRICE, {"model": "rivya-image-1", "prompt": "a fox"})
    assert small.status_code == 200
    assert small.json() == {"object": "price", "model": "rivya-image-1", "price": 2, "available": 5, "enough": True}
    # The price follows the fields: above 512x512 the image model costs 2 more.
    size = {"rivya-image-1.width": "1024", "rivya-image-1.height": "1024"}
    large = funded.client.post(PRICE, {"model": "rivya-image-1", "prompt": "a fox", **size})
    assert large.json()["price"] == 4
    video = funded.client.post(PRICE, {"model": "rivya-video-1", "prompt": "a fox", "rivya-video-1.duration": "5"})
    assert video.json() == {"object": "price", "model": "rivya-video-1", "price": 13, "available": 5, "enough": False}
    # Nothing was reserved or created.
    assert not GenerationTask.objects.exists()
    assert wallet_get(account=funded.account).held == 0


def test_the_price_of_a_form_the_model_refuses_names_the_field(funded):
    response = funded.client.post(PRICE, {"model": "rivya-image-1", "prompt": "a fox", "rivya-image-1.width": "5000"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "rivya-image-1.width"
    assert "1024" in error["message"]
    empty = funded.client.post(PRICE, {"model": "rivya-image-1", "prompt": ""}).json()["error"]
    assert empty["param"] == "prompt"
    unknown = funded.client.post(PRICE, {"model": "no-such-model", "prompt": "x"}).json()["error"]
    assert unknown["param"] == "model"


def test_the_check_price_button_prices_without_javascript_and_creates_nothing(funded):
    response = funded.client.post(
        STUDIO, {"model": "rivya-video-1", "prompt": "a fox", "rivya-video-1.duration": "5", "action": "price"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r"Price: <strong data-price-value>13</strong> credits, 5 available\.", html)
    assert "Not enough credits." in html
    assert 'value="5"' in html  # the form keeps what was typed
    assert not GenerationTask.objects.exists()


def test_the_price_needs_a_session(client, member):
    response = client.post(PRICE, {"model": "rivya-image-1", "prompt": "a fox"})
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert member.client.get(PRICE).status_code == 405
