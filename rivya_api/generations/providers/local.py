"""Local providers: real images, speech and video made offline, with nothing but pinned packages.

They let the embedded default run the whole generation flow without keys or
network, and give the tests real media to check. Catalog entries, e.g.::

    "local-image": {"kind": "image", "provider": "rivya_api.generations.providers.local.LocalImageProvider",
                    "options": {}, "parameters": LocalImageProvider.parameters_schema({}), ...}

Every provider here is deterministic for a given input (video up to the
encoder's bit stream) and ``safe_to_retry``. Each finishes its default job
(``{"prompt": "..."}``) in well under 10 s on a 2-core machine; see
``bench/providers.py``.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import av
from PIL import Image, UnidentifiedImageError

from rivya_api.generations.providers import _speech
from rivya_api.generations.providers._scene import Scene, apply_reference, prompt_seed
from rivya_api.generations.providers.base import (
    InputFile,
    OutputFile,
    ProgressReporter,
    Provider,
    ProviderInputError,
    ProviderOutputError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    file_parameter,
)

__all__ = ["LocalAudioProvider", "LocalImageProvider", "LocalVideoProvider"]

logger = logging.getLogger(__name__)

PROMPT = {
    "type": "string",
    "minLength": 1,
    "maxLength": 2000,
    "pattern": r"\S",
    "description": "What to make.",
}
SEED = {
    "type": "integer",
    "minimum": 0,
    "maximum": 2**32 - 1,
    "description": "Same prompt and seed give the same result. Defaults to a number derived from the prompt.",
}
# Reference images larger than this many pixels are refused before being decoded.
MAX_REFERENCE_PIXELS = 40_000_000


def _size_property(default: int, minimum: int, maximum: int, what: str, multiple_of: int = 1) -> dict[str, Any]:
    prop = {"type": "integer", "minimum": minimum, "maximum": maximum, "default": default, "description": what}
    if multiple_of > 1:
        prop["multipleOf"] = multiple_of
    return prop


def _object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": ["prompt"], "additionalProperties": False}


# -- image --------------------------------------------------------------------------------------


class LocalImageProvider(Provider):
    """An abstract picture drawn from the prompt and seed with Pillow; PNG (or WebP).

    Input: ``prompt``; ``width``/``height`` (64–``options["max_size"]`` (1024), default
    512); ``seed``; ``reference_image`` (a ``file_…`` image), blended in with
    ``reference_strength`` (0–1, default 0.6); ``format`` (``png``|``webp``).
    Same input, same bytes: the encoders write no timestamps or metadata.
    """

    kind = "image"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        options = options or {}
        top = int(options.get("max_size", 1024))
        default = min(int(options.get("default_size", 512)), top)
        return _object_schema(
            {
                "prompt": PROMPT,
                "width": _size_property(default, 64, top, "Width in pixels."),
                "height": _size_property(default, 64, top, "Height in pixels."),
                "seed": SEED,
                "reference_image": file_parameter("An image whose colours and layout shape the result."),
                "reference_strength": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "default": 0.6,
                    "description": "How much of the reference image shows through (0–1).",
                },
                "format": {"type": "string", "enum": ["png", "webp"], "default": "png"},
            }
        )

    def generate(self, *, params: dict[str, Any], input_files: dict[str, InputFile], progress: ProgressReporter):
        prompt = params["prompt"]
        seed = params.get("seed", prompt_seed(prompt))
        width, height = params["width"], params["height"]
        reference = None
        if params.get("reference_image"):
            reference = _open_reference(input_files.get("reference_image"))
        progress(10)
        image = Scene(prompt=prompt, seed=seed, width=width, height=height).frame(0.0)
        progress(60)
        if reference is not None:
            try:
                image = apply_reference(image, reference, float(params["reference_strength"]))
            except (OSError, ValueError) as exc:  # a pixel mode Pillow cannot turn into RGB
                raise ProviderInputError("The reference image cannot be used.", param="reference_image") from exc
        data, content_type = _encode_image(image, params["format"])
        progress(95)
        extension = params["format"]
        return [
            OutputFile(
                filename=f"image.{extension}",
                content_type=content_type,
                data=data,
                metadata={"width": width, "height": height, "seed": seed},
            )
        ]


def _open_reference(input_file: InputFile | None) -> Image.Image:
    if input_file is None:
        raise ProviderInputError("The reference image file is missing.", param="reference_image")
    try:
        with input_file.open() as stream:
            image = Image.open(stream)
            if image.width * image.height > MAX_REFERENCE_PIXELS:
                raise ProviderInputError("The reference image is too large.", param="reference_image")
            image.draft("RGB", (1024, 1024))  # JPEG decodes at a reduced scale: much faster
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ProviderInputError("The reference image cannot be read.", param="reference_image") from exc
    return image


def _encode_image(image: Image.Image, fmt: str) -> tuple[bytes, str]:
    # A fresh image carries no ``info`` (ICC, EXIF, text chunks), so nothing varies between runs.
    clean = Image.frombytes("RGB", image.size, image.convert("RGB").tobytes())
    buffer = io.BytesIO()
    if fmt == "webp":
        clean.save(buffer, format="WEBP", quality=90, method=4)
        return buffer.getvalue(), "image/webp"
    clean.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), "image/png"


# -- audio --------------------------------------------------------------------------------------


class LocalAudioProvider(Provider):
    """The prompt read aloud by espeak-ng, or synthesised sounds following the text without it.

    Input: ``prompt`` (the text); ``voice`` (an espeak-ng voice, default ``en``);
    ``speed`` (words per minute, 80–400, default 165); ``format`` (``wav``|``ogg``,
    Opus in Ogg). Options: ``engine`` — ``"auto"`` (espeak-ng when installed,
    else synthesis; the default), ``"espeak"`` (fail as unavailable without it)
    or ``"synth"``; ``espeak_binary`` (default ``"espeak-ng"``). Duration grows
    with the text and the result is never silent (silent speech, e.g. from
    text espeak-ng cannot pronounce, falls back to synthesis).
    """

    kind = "audio"
    VOICES = ("en", "en-us", "en-gb-x-rp", "hi", "es", "fr", "de", "it", "pt", "ru", "ja", "zh")
    # Below this peak (of 32767) a result counts as silent.
    SILENCE_PEAK = 200

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return _object_schema(
            {
                "prompt": {**PROMPT, "description": "The text to speak."},
                "voice": {"type": "string", "enum": list(cls.VOICES), "default": "en", "description": "Language."},
                "speed": {
                    "type": "integer",
                    "minimum": 80,
                    "maximum": 400,
                    "default": 165,
                    "description": "Words/min.",
                },
                "format": {"type": "string", "enum": ["wav", "ogg"], "default": "wav"},
            }
        )

    def engine(self) -> str:
        """``"espeak"`` or ``"synth"``: what this provider will use here."""
        choice = self.options.get("engine", "auto")
        binary = self.options.get("espeak_binary", "espeak-ng")
        if choice == "synth" or (choice == "auto" and not _speech.espeak_available(binary)):
            return "synth"
        return "espeak"

    def generate(self, *, params: dict[str, Any], input_files: dict[str, InputFile], progress: ProgressReporter):
        text, speed = params["prompt"], params["speed"]
        progress(5)
        samples, rate = None, _speech.SAMPLE_RATE
        if self.engine() == "espeak":
            samples, rate = self._espeak(text, params["voice"], speed, progress)
        if samples is None or _speech.peak(samples) < self.SILENCE_PEAK:
            samples, rate = _speech.synthesize(text, words_per_minute=speed)
        progress(70)
        duration = len(samples) / rate
        if params["format"] == "ogg":
            data, content_type, extension = _encode_opus(samples, rate), "audio/ogg", "ogg"
        else:
            data, content_type, extension = _speech.wav_bytes(samples, rate), "audio/wav", "wav"
        return [
            OutputFile(
                filename=f"speech.{extension}",
                content_type=content_type,
                data=data,
                metadata={"duration_seconds": round(duration, 3), "sample_rate": rate},
            )
        ]

    def _espeak(self, text: str, voice: str, speed: int, progress: ProgressReporter):
        timeout = min(progress.remaining(), float(self.options.get("espeak_timeout", 60)))
        try:
            return _speech.espeak(
                text,
                voice=voice,
                words_per_minute=speed,
                timeout=timeout,
                binary=self.options.get("espeak_binary", "espeak-ng"),
            )
        except subprocess.TimeoutExpired as exc:
            raise ProviderTimeoutError() from exc
        except (_speech.SpeechError, OSError) as exc:
            if self.options.get("engine") == "espeak":
                logger.warning("espeak-ng failed: %s", exc)
                raise ProviderUnavailableError() from exc
            logger.info("espeak-ng failed, synthesising instead: %s", exc)
            return None, _speech.SAMPLE_RATE


def _encode_opus(samples, rate: int) -> bytes:
    """Opus in Ogg through PyAV; the encoder resamples to 48 kHz itself."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        stream.bit_rate = 48000
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples))
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        frame.planes[0].update(_speech._little_endian(samples).tobytes())
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


# -- video --------------------------------------------------------------------------------------

# Tried in order; the first PyAV's bundled FFmpeg can encode wins (PyAV's wheels ship libx264).
VIDEO_CODECS = (
    ("libx264", "mp4", "video/mp4", {"preset": "veryfast", "crf": "23"}),
    ("mpeg4", "mp4", "video/mp4", {"qscale": "4"}),
    ("libvpx-vp9", "webm", "video/webm", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}),
)


def video_codec(name: str | None = None) -> tuple[str, str, str, dict[str, str]]:
    """``(codec, container, content_type, options)`` of encoder ``name``, or of the best one available."""
    for entry in VIDEO_CODECS:
        if name is not None and entry[0] != name:
            continue
        try:
            av.codec.Codec(entry[0], "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        return entry
    logger.error("no video encoder available (asked for %s)", name or "any")
    raise ProviderUnavailableError()


class LocalVideoProvider(Provider):
    """A moving picture drawn from the prompt and seed, H.264 in MP4 (VP9/WebM where x264 is missing).

    Input: ``prompt``; ``width``/``height`` (64–1280, even, default 640×360);
    ``duration`` (1–10 s, default 2); ``fps`` (8–30, default 24); ``seed``.
    The default job is 48 frames, every one different. Progress is reported
    while frames are rendered and encoded. ``options["codec"]`` pins the encoder
    (``libx264``, ``mpeg4`` or ``libvpx-vp9``); by default the first available wins.
    """

    kind = "video"

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        options = options or {}
        top = int(options.get("max_size", 1280))
        return _object_schema(
            {
                "prompt": PROMPT,
                "width": _size_property(min(640, top), 64, top, "Width in pixels (even).", multiple_of=2),
                "height": _size_property(min(360, top), 64, top, "Height in pixels (even).", multiple_of=2),
                "duration": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": float(options.get("max_duration", 10)),
                    "default": 2,
                    "description": "Length in seconds.",
                },
                "fps": {"type": "integer", "minimum": 8, "maximum": 30, "default": 24, "description": "Frames/s."},
                "seed": SEED,
            }
        )

    def generate(self, *, params: dict[str, Any], input_files: dict[str, InputFile], progress: ProgressReporter):
        prompt = params["prompt"]
        seed = params.get("seed", prompt_seed(prompt))
        width, height, fps = params["width"], params["height"], params["fps"]
        frames = max(2, round(float(params["duration"]) * fps))
        codec, container_format, content_type, codec_options = video_codec(self.options.get("codec"))
        scene = Scene(prompt=prompt, seed=seed, width=width, height=height)
        progress(3)
        # MP4's index goes at the front (faststart) for streaming playback, which needs a
        # seekable, re-readable file: write to a temporary file, not to memory.
        with tempfile.TemporaryDirectory(prefix="rivya-video-") as directory:
            path = os.path.join(directory, f"video.{container_format}")
            options = {"movflags": "+faststart"} if container_format == "mp4" else {}
            with av.open(path, mode="w", format=container_format, options=options) as container:
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.options = codec_options
                for index in range(frames):
                    frame = av.VideoFrame.from_image(scene.frame(index / frames))
                    frame.pts = index
                    frame.time_base = Fraction(1, fps)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    progress(3 + 92 * (index + 1) / frames)
                for packet in stream.encode(None):
                    container.mux(packet)
            with open(path, "rb") as handle:
                data = handle.read()
        if not data:
            raise ProviderOutputError()
        return [
            OutputFile(
                filename=f"video.{container_format}",
                content_type=content_type,
                data=data,
                metadata={
                    "width": width,
                    "height": height,
                    "fps": fps,
                    "frames": frames,
                    "duration_seconds": round(frames / fps, 3),
                    "seed": seed,
                },
            )
        ]
