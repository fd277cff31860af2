"""The OpenAI-Images adapter against a stand-in upstream on a real local socket.

Every failure must become a typed Rivya error whose message names neither the
upstream, nor its model, nor its URL, nor anything from its answer.
"""

from __future__ import annotations

import base64
import io
import logging
import socket
import time

import pytest
from PIL import Image

from rivya_api.generations.providers import (
    ProviderError,
    ProviderInputError,
    ProviderOutputError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from rivya_api.generations.providers.openai_images import OpenAIImagesProvider
from tests.rivya_api.generations.standin import Reply, stand_in_server

API_KEY = "sk-upstream-secret-4f9a"
UPSTREAM_MODEL = "gpt-image-1"
UPSTREAM_ERROR = {"error": {"message": "OpenAI safety system rejected gpt-image-1 request", "type": "invalid_request"}}
OPTIONS = {
    "base_url_env": "RIVYA_TEST_IMAGES_BASE_URL",
    "api_key_env": "RIVYA_TEST_IMAGES_API_KEY",
    "upstream_model": UPSTREAM_MODEL,
    "timeout": 5,
}


def encoded(fmt: str = "PNG", size: tuple[int, int] = (32, 24)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def images_reply(*items: str) -> Reply:
    return Reply.json({"created": 1700000000, "data": [{"b64_json": item} for item in items]})


@pytest.fixture
def upstream(monkeypatch):
    with stand_in_server() as server:
        monkeypatch.setenv(OPTIONS["base_url_env"], f"{server.url}/v1")
        monkeypatch.setenv(OPTIONS["api_key_env"], API_KEY)
        yield server


def run(options=None, **input_):
    provider = OpenAIImagesProvider({**OPTIONS, **(options or {})})
    return provider.run(input={"prompt": "a red fox", **input_})


def assert_says_nothing_of_the_upstream(error: ProviderError, base_url: str = "") -> None:
    public = f"{error} {error.message} {error.code} {error.as_dict()}".lower()
    for secret in ("openai", "gpt", UPSTREAM_MODEL, API_KEY, "safety system", "127.0.0.1", base_url.lower()):
        if secret:
            assert secret.lower() not in public, (secret, public)


# -- configuration ------------------------------------------------------------------------------


def test_configured_only_when_both_variables_are_set(monkeypatch):
    monkeypatch.delenv(OPTIONS["base_url_env"], raising=False)
    monkeypatch.delenv(OPTIONS["api_key_env"], raising=False)
    assert OpenAIImagesProvider.is_configured(OPTIONS) is False
    monkeypatch.setenv(OPTIONS["base_url_env"], "http://127.0.0.1:9/v1")
    assert OpenAIImagesProvider.is_configured(OPTIONS) is False
    monkeypatch.setenv(OPTIONS["api_key_env"], "  ")
    assert OpenAIImagesProvider.is_configured(OPTIONS) is False
    monkeypatch.setenv(OPTIONS["api_key_env"], API_KEY)
    assert OpenAIImagesProvider.is_configured(OPTIONS) is True


def test_values_given_in_options_win_over_the_variables(upstream, monkeypatch):
    # The catalog's ``upstream`` entry reads the variables and hands the values in options.
    monkeypatch.setenv(OPTIONS["base_url_env"], "http://127.0.0.1:9/v1")
    monkeypatch.setenv(OPTIONS["api_key_env"], "sk-wrong")
    given = {"base_url": f"{upstream.url}/v1", "api_key": API_KEY}
    assert OpenAIImagesProvider.is_configured({**OPTIONS, **given}) is True
    assert OpenAIImagesProvider.is_configured({**OPTIONS, "base_url": "", "api_key": API_KEY}) is False
    upstream.answer = lambda request: images_reply(encoded())
    [output] = run(given)
    assert output.content_type == "image/png"
    assert upstream.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"


def test_running_unconfigured_is_unavailable(monkeypatch):
    monkeypatch.delenv(OPTIONS["api_key_env"], raising=False)
    with pytest.raises(ProviderUnavailableError) as caught:
        run()
    assert_says_nothing_of_the_upstream(caught.value)


def test_schema_offers_the_configured_sizes():
    schema = OpenAIImagesProvider.parameters_schema({"sizes": ["512x512", "1024x1024"], "max_images": 2})
    assert schema["properties"]["size"] == {
        "type": "string",
        "enum": ["512x512", "1024x1024"],
        "default": "512x512",
        "description": "WIDTHxHEIGHT.",
    }
    assert schema["properties"]["n"]["maximum"] == 2
    with pytest.raises(ProviderInputError) as caught:
        run(size="999x999")
    assert caught.value.param == "size"


# -- success ------------------------------------------------------------------------------------


def test_generates_images_from_the_upstream(upstream):
    upstream.answer = lambda request: images_reply(encoded("PNG"), encoded("JPEG"))
    seen: list[int] = []
    outputs = OpenAIImagesProvider(OPTIONS).run(
        input={"prompt": "a red fox", "size": "1536x1024", "n": 2}, progress=seen.append
    )
    assert [o.content_type for o in outputs] == ["image/png", "image/jpeg"]
    assert [o.filename for o in outputs] == ["image-1.png", "image-2.jpg"]
    assert outputs[0].metadata == {"width": 32, "height": 24}
    Image.open(io.BytesIO(outputs[1].data)).load()
    [request] = upstream.requests
    assert (request.method, request.path) == ("POST", "/v1/images/generations")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.json() == {
        "model": UPSTREAM_MODEL,
        "prompt": "a red fox",
        "size": "1536x1024",
        "n": 2,
        "response_format": "b64_json",
    }
    assert seen == [0, 5, 90, 100]


def test_defaults_and_request_options(upstream, monkeypatch):
    # A trailing slash in the base URL does not double up.
    monkeypatch.setenv(OPTIONS["base_url_env"], f"{upstream.url}/v1/")
    upstream.answer = lambda request: images_reply(encoded("WEBP"))
    [output] = run({"response_format": None, "extra_body": {"quality": "low", "prompt": "ignored"}})
    assert output.content_type == "image/webp"
    [request] = upstream.requests
    assert request.path == "/v1/images/generations"
    assert request.json() == {
        "quality": "low",
        "prompt": "a red fox",
        "size": "1024x1024",
        "n": 1,
        "model": UPSTREAM_MODEL,
    }


# -- upstream errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ProviderInputError),
        (422, ProviderInputError),
        (401, ProviderUnavailableError),
        (403, ProviderUnavailableError),
        (404, ProviderUnavailableError),
        (429, ProviderUnavailableError),
        (500, ProviderUnavailableError),
        (502, ProviderUnavailableError),
        (503, ProviderUnavailableError),
        (408, ProviderTimeoutError),
        (504, ProviderTimeoutError),
        (302, ProviderUnavailableError),
    ],
)
def test_upstream_statuses_map_to_rivya_errors(upstream, status, error_class, caplog):
    # Every answer carries a Location, so a redirect (302) would be followable if we allowed it.
    headers = {"Content-Type": "application/json", "Location": f"{upstream.url}/elsewhere"}
    upstream.answer = lambda request: Reply(status, Reply.json(UPSTREAM_ERROR).body, headers)
    with (
        caplog.at_level(logging.WARNING, logger="rivya_api.generations.providers"),
        pytest.raises(ProviderError) as caught,
    ):
        run()
    assert type(caught.value) is error_class
    assert_says_nothing_of_the_upstream(caught.value, upstream.url)
    assert len(upstream.requests) == 1  # a redirect is not followed
    # The operator's log has the status and the upstream's words; never the key.
    assert str(status) in caplog.text
    assert "safety system" in caplog.text
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"{not json", {"Content-Type": "application/json"}),
        Reply(200, b"<html>gateway</html>", {"Content-Type": "text/html"}),
        Reply.json({"data": []}),
        Reply.json({"result": "ok"}),
        Reply.json(["not", "an", "object"]),
        Reply.json({"data": [{"url": "http://127.0.0.1:9/image.png"}]}),
        Reply.json({"data": [{"b64_json": "%%% not base64 %%%"}]}),
        Reply.json({"data": [{"b64_json": base64.b64encode(b"GIF89a not ours").decode()}]}),
        Reply.json({"data": [{"b64_json": encoded("PNG")[:60]}]}),  # a truncated PNG
    ],
    ids=[
        "malformed-json",
        "html",
        "empty-data",
        "no-data",
        "list",
        "url-only",
        "bad-base64",
        "not-an-image",
        "truncated",
    ],
)
def test_malformed_answers_are_output_errors(upstream, reply):
    upstream.answer = lambda request: reply
    with pytest.raises(ProviderOutputError) as caught:
        run()
    assert_says_nothing_of_the_upstream(caught.value, upstream.url)


def test_an_oversized_answer_is_an_output_error(upstream):
    upstream.answer = lambda request: images_reply(encoded("PNG", (256, 256)))
    with pytest.raises(ProviderOutputError):
        run({"max_response_bytes": 1000})


# -- time and transport -------------------------------------------------------------------------


def test_a_slow_upstream_times_out(upstream):
    upstream.answer = lambda request: Reply(200, b"{}", delay=10)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as caught:
        run({"timeout": 0.3})
    assert time.monotonic() - started < 3
    assert_says_nothing_of_the_upstream(caught.value, upstream.url)


def test_an_answer_that_trickles_in_times_out_as_a_whole(upstream):
    # Each byte arrives well within the read timeout, but the whole answer would take 20 s.
    upstream.answer = lambda request: Reply(200, b" " * 200, {"Content-Type": "application/json"}, trickle=0.1)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        run({"timeout": 0.5})
    assert time.monotonic() - started < 3


def test_the_job_deadline_shortens_the_upstream_timeout(upstream):
    upstream.answer = lambda request: Reply(200, b"{}", delay=10)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        OpenAIImagesProvider({**OPTIONS, "timeout": 60}).run(
            input={"prompt": "a red fox"}, deadline=time.monotonic() + 0.3
        )
    assert time.monotonic() - started < 3


def test_a_passed_deadline_sends_nothing(upstream):
    with pytest.raises(ProviderTimeoutError):
        OpenAIImagesProvider(OPTIONS).run(input={"prompt": "a red fox"}, deadline=time.monotonic() - 1)
    assert upstream.requests == []


def test_connection_refused_is_unavailable(monkeypatch):
    # A bound socket that never listens: connecting to its port is refused, and nothing
    # else can take the port while we hold it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        monkeypatch.setenv(OPTIONS["base_url_env"], f"http://127.0.0.1:{port}/v1")
        monkeypatch.setenv(OPTIONS["api_key_env"], API_KEY)
        with pytest.raises(ProviderUnavailableError) as caught:
            run()
    assert_says_nothing_of_the_upstream(caught.value, f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("base_url", ["not a url", "ftp://127.0.0.1/v1", "http://[::1/v1"])
def test_a_bad_base_url_is_unavailable(monkeypatch, base_url):
    monkeypatch.setenv(OPTIONS["base_url_env"], base_url)
    monkeypatch.setenv(OPTIONS["api_key_env"], API_KEY)
    with pytest.raises(ProviderUnavailableError):
        run()
