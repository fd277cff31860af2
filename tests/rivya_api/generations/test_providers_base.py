"""The provider interface: input normalisation, progress and deadline, files, errors, loading."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rivya_api.generations.providers import (
    InputFile,
    OutputFile,
    ProgressReporter,
    Provider,
    ProviderError,
    ProviderInputError,
    ProviderOutputError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    file_parameter,
    file_parameters,
    provider_class,
)
from rivya_api.generations.providers.local import LocalAudioProvider, LocalImageProvider, LocalVideoProvider
from rivya_api.generations.providers.openai_images import OpenAIImagesProvider

PROVIDERS = [LocalImageProvider, LocalAudioProvider, LocalVideoProvider, OpenAIImagesProvider]


class EchoProvider(Provider):
    """Writes its normalised input back as JSON, reporting progress through the reporter."""

    kind = "image"

    @classmethod
    def parameters_schema(cls, options=None):
        return {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "steps": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "image": file_parameter("An image."),
            },
            "required": ["prompt"],
            "additionalProperties": False,
        }

    def generate(self, *, params, input_files, progress):
        for step in range(params["steps"]):
            progress(100 * step / params["steps"])
        body = {"params": params, "files": sorted(input_files)}
        return [OutputFile("echo.json", "application/json", json.dumps(body).encode())]


def test_defaults_are_filled_in_and_progress_ends_at_100():
    seen: list[int] = []
    [output] = EchoProvider().run(input={"prompt": "hi"}, progress=seen.append)
    assert json.loads(output.data) == {"params": {"prompt": "hi", "steps": 3}, "files": []}
    assert seen == [0, 33, 66, 100]


@pytest.mark.parametrize(
    ("input_", "param", "fragment"),
    [
        ({}, "prompt", "required"),
        ({"prompt": ""}, "prompt", "prompt"),
        ({"prompt": "x", "steps": 11}, "steps", "steps"),
        ({"prompt": "x", "steps": "3"}, "steps", "steps"),
        ({"prompt": "x", "colour": "red"}, "colour", "Unknown parameter: colour"),
        ({"prompt": "x", "image": "http://example.com/a.png"}, "image", "image"),
    ],
)
def test_invalid_input_names_the_parameter(input_: dict[str, Any], param: str, fragment: str):
    with pytest.raises(ProviderInputError) as caught:
        EchoProvider().run(input=input_)
    assert caught.value.param == param
    assert fragment in caught.value.message
    assert caught.value.code == "invalid_input"


def test_progress_is_clamped_monotonic_and_deduplicated():
    seen: list[int] = []
    report = ProgressReporter(seen.append, None)
    for value in (-5, 0, 10, 10.9, 7, 50, 250, 100):
        report(value)
    assert seen == [0, 10, 50, 100]


def test_deadline_uses_the_injected_clock():
    now = [100.0]
    report = ProgressReporter(None, 105.0, clock=lambda: now[0])
    report(10)
    assert report.remaining() == 5.0
    now[0] = 105.0
    with pytest.raises(ProviderTimeoutError):
        report(20)


def test_a_deadline_already_past_stops_before_any_work():
    seen: list[int] = []
    with pytest.raises(ProviderTimeoutError):
        EchoProvider().run(input={"prompt": "x"}, progress=seen.append, deadline=0.0)
    assert seen == []


def test_what_the_progress_callback_raises_propagates():
    class Canceled(Exception):
        pass

    def progress(value: int) -> None:
        if value >= 30:
            raise Canceled

    with pytest.raises(Canceled):
        EchoProvider().run(input={"prompt": "x", "steps": 5}, progress=progress)


def test_input_files_reach_the_provider():
    files = {"image": InputFile.from_bytes(b"png", content_type="image/png")}
    [output] = EchoProvider().run(input={"prompt": "x", "image": "file_abc"}, input_files=files)
    assert json.loads(output.data)["files"] == ["image"]


def test_input_file_from_bytes_or_path(tmp_path):
    path = tmp_path / "ref.png"
    path.write_bytes(b"abc")
    from_path = InputFile.from_path(path, content_type="image/png")
    assert from_path.read() == b"abc"
    assert from_path.filename == "ref.png"
    with from_path.open() as stream:
        assert stream.read() == b"abc"
    assert InputFile.from_bytes(b"xyz", content_type="image/png").open().read() == b"xyz"
    with pytest.raises(ValueError, match="exactly one"):
        InputFile(content_type="image/png")


def test_file_parameters_lists_the_file_ids_of_a_schema():
    assert file_parameters(EchoProvider.parameters_schema()) == {"image": ["image/png", "image/jpeg", "image/webp"]}
    assert file_parameters(LocalImageProvider.parameters_schema({})) == {
        "reference_image": ["image/png", "image/jpeg", "image/webp"]
    }
    assert file_parameters(LocalVideoProvider.parameters_schema({})) == {}


@pytest.mark.parametrize("cls", PROVIDERS)
def test_every_provider_declares_a_schema_where_a_prompt_alone_is_valid(cls):
    import jsonschema

    schema = cls.parameters_schema({})
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"prompt": "a lighthouse"}, schema)
    assert schema["required"] == ["prompt"]
    assert cls.kind in ("image", "video", "audio")
    for name, prop in schema["properties"].items():
        # Everything but the prompt has a default or is optional by nature (seed, file ids).
        assert name == "prompt" or "default" in prop or name in ("seed", "reference_image"), name


def test_error_classes_have_public_codes_and_generic_messages():
    codes = {
        ProviderError: "generation_failed",
        ProviderTimeoutError: "generation_timeout",
        ProviderUnavailableError: "model_unavailable",
        ProviderInputError: "invalid_input",
        ProviderOutputError: "invalid_output",
    }
    for cls, code in codes.items():
        error = cls()
        assert error.as_dict() == {"code": code, "message": cls.default_message}
        assert isinstance(error, ProviderError)
    assert ProviderInputError("Bad size.", param="size").param == "size"


def test_safe_to_retry_defaults_per_provider_and_options_override_it():
    assert LocalImageProvider({}).safe_to_retry is True
    assert OpenAIImagesProvider({}).safe_to_retry is False
    assert OpenAIImagesProvider({"safe_to_retry": True}).safe_to_retry is True


def test_provider_class_loads_dotted_paths_and_refuses_non_providers():
    path = "rivya_api.generations.providers.local.LocalImageProvider"
    assert provider_class(path) is LocalImageProvider
    assert provider_class("rivya_api.generations.providers.openai_images.OpenAIImagesProvider") is OpenAIImagesProvider
    with pytest.raises(TypeError, match="not a rivya_api"):
        provider_class("rivya_api.generations.providers.base.InputFile")
    with pytest.raises(ImportError):
        provider_class("rivya_api.generations.providers.local.NoSuchProvider")
