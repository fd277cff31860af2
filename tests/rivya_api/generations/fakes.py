"""Test providers for generation lifecycle tests: fail, crawl, or run the real local ones."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from rivya_api.generations.providers import OutputFile, Provider, ProviderUnavailableError
from rivya_api.generations.providers.local import LocalImageProvider

PROMPT_ONLY = {
    "type": "object",
    "required": ["prompt"],
    "properties": {"prompt": {"type": "string", "minLength": 1}, "seconds": {"type": "number", "default": 0}},
}


class FailingProvider(Provider):
    """Reports some progress, then fails like an upstream outage."""

    kind = "image"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return PROMPT_ONLY

    def generate(self, *, params: dict[str, Any], input_files: Any, progress: Any) -> list[OutputFile]:
        progress(30)
        raise ProviderUnavailableError()


class SlowImageProvider(LocalImageProvider):
    """The local image provider after ``seconds`` of reported progress (for kill and cancel tests)."""

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        schema = dict(super().parameters_schema(options))
        schema["properties"] = {**schema["properties"], "seconds": {"type": "number", "default": 0}}
        return schema

    @property
    def safe_to_retry(self) -> bool:
        return bool(self.options.get("safe_to_retry", False))

    def generate(self, *, params: dict[str, Any], input_files: Any, progress: Any) -> list[OutputFile]:
        seconds = float(params.pop("seconds", 0))
        steps = max(1, int(seconds * 10))
        for step in range(steps):
            time.sleep(seconds / steps)
            progress(1 + 90 * step // steps)
        return super().generate(params=params, input_files=input_files, progress=progress)


class RunawayProvider(Provider):
    """Never finishes and never reports: a busy loop, as a provider stuck in a computation would be.
    Writes its process id to ``options["pid_file"]`` (if given) so a test can check it was stopped."""

    kind = "image"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return PROMPT_ONLY

    def generate(self, *, params: dict[str, Any], input_files: Any, progress: Any) -> list[OutputFile]:
        if self.options.get("pid_file"):
            with open(self.options["pid_file"], "w") as handle:
                handle.write(str(os.getpid()))
        while True:
            sum(range(10_000))


def model(model_id: str, provider: str, *, kind: str = "image", price: int = 5, **extra: Any) -> dict[str, Any]:
    entry = {
        "id": model_id,
        "kind": kind,
        "description": f"Test model {model_id}.",
        "provider": provider,
        "pricing": {"base": price},
        "limits": {"timeout_seconds": 60},
    }
    entry.update(extra)
    return entry


LOCAL = "rivya_api.generations.providers.local"
FAKES = "tests.rivya_api.generations.fakes"

GENERATION_MODELS = [
    model("test-image", f"{LOCAL}.LocalImageProvider", price=4),
    model("test-audio", f"{LOCAL}.LocalAudioProvider", kind="audio", price=3, options={"engine": "synth"}),
    model("test-video", f"{LOCAL}.LocalVideoProvider", kind="video", price=6),
    model("test-failing", f"{FAKES}.FailingProvider", price=5),
    model("test-slow", f"{FAKES}.SlowImageProvider", price=2),
    model("test-slow-retry", f"{FAKES}.SlowImageProvider", price=2, options={"safe_to_retry": True}),
    model("test-runaway", f"{FAKES}.RunawayProvider", price=3, limits={"timeout_seconds": 2}),
]


class PidProvider(Provider):
    """Answers with its process id (also written to ``options["pid_file"]``, if given); ``mode`` in the
    input makes it fail, crash, exit, overrun, or leave a thread behind that reports progress later."""

    kind = "image"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"type": "object", "properties": {"mode": {"type": "string"}}}

    def generate(self, *, params: dict[str, Any], input_files: Any, progress: Any) -> list[OutputFile]:
        mode = params.get("mode", "ok")
        if self.options.get("pid_file"):
            with open(self.options["pid_file"], "w") as handle:
                handle.write(str(os.getpid()))
        progress(10)
        if mode == "fail":
            raise ProviderUnavailableError()
        if mode == "crash":
            raise ZeroDivisionError("a provider bug")
        if mode == "exit":
            os._exit(3)
        if mode.startswith("leave"):  # "leave-fail" / "leave-ok": the thread reports 77 after the job ended
            threading.Thread(target=lambda: (time.sleep(0.3), progress(77)), daemon=True).start()
            if mode == "leave-fail":
                raise ProviderUnavailableError()
        if mode == "slow":
            time.sleep(1.0)
        while mode == "overrun":
            sum(range(10_000))
        return [OutputFile(filename="pid.txt", content_type="text/plain", data=str(os.getpid()).encode())]
