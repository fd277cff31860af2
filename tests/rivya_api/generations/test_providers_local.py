"""Local providers: real PNG/WebP, WAV/Ogg and MP4 media, decoded back and compared.

Most tests use small sizes to stay fast; one test per kind runs the default
job (``{"prompt": ...}`` alone) and checks it finishes in under 10 seconds.
"""

from __future__ import annotations

import io
import shutil
import time
import wave

import av
import pytest
from PIL import Image, ImageChops, ImageStat

from rivya_api.generations.providers import (
    InputFile,
    ProviderInputError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from rivya_api.generations.providers.local import (
    LocalAudioProvider,
    LocalImageProvider,
    LocalVideoProvider,
    video_codec,
)
from tests.services import services_required

SMALL_IMAGE = {"width": 96, "height": 64}
SMALL_VIDEO = {"width": 96, "height": 64, "duration": 1, "fps": 24}
DEFAULT_JOB_SECONDS = 10


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")


def decode_wav(data: bytes) -> tuple[float, int]:
    """``(duration in seconds, peak sample)`` of a 16-bit mono WAV."""
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        frames = reader.readframes(reader.getnframes())
        duration = reader.getnframes() / reader.getframerate()
    samples = memoryview(frames).cast("h")
    return duration, max(abs(s) for s in samples)


def decode_video(data: bytes) -> list[Image.Image]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


# -- image --------------------------------------------------------------------------------------


def run_image(**input_):
    [output] = LocalImageProvider({}).run(input={**SMALL_IMAGE, **input_})
    return output


def test_image_is_a_valid_png_of_the_requested_size():
    output = run_image(prompt="a red fox at dawn")
    assert output.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert output.content_type == "image/png"
    assert output.filename == "image.png"
    image = decode_image(output.data)
    assert image.size == (96, 64)
    assert (output.metadata["width"], output.metadata["height"]) == (96, 64)
    # Not a flat fill: the picture has real variation.
    assert max(ImageStat.Stat(image).stddev) > 10


def test_same_prompt_and_seed_give_identical_bytes():
    assert run_image(prompt="a red fox", seed=7).data == run_image(prompt="a red fox", seed=7).data
    # Without a seed, the prompt's own seed is used: still reproducible.
    assert run_image(prompt="a red fox").data == run_image(prompt="a red fox").data


def test_png_carries_no_metadata_chunks():
    data = run_image(prompt="a red fox").data
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunks.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    assert set(chunks) <= {b"IHDR", b"IDAT", b"IEND"}


def test_different_prompts_or_seeds_give_different_pixels():
    base = decode_image(run_image(prompt="a red fox", seed=1).data)
    other_prompt = decode_image(run_image(prompt="a blue whale", seed=1).data)
    other_seed = decode_image(run_image(prompt="a red fox", seed=2).data)
    assert mean_difference(base, other_prompt) > 10
    assert mean_difference(base, other_seed) > 5


def test_a_reference_image_shapes_the_result():
    # Half black, half white: a strong layout the result must show.
    reference = Image.new("RGB", (200, 100), "black")
    reference.paste((255, 255, 255), (100, 0, 200, 100))
    files = {"reference_image": InputFile.from_bytes(png(reference), content_type="image/png")}
    input_ = {**SMALL_IMAGE, "prompt": "a red fox", "seed": 3, "reference_image": "file_ref"}
    [shaped] = LocalImageProvider({}).run(input=input_, input_files=files)
    plain = decode_image(run_image(prompt="a red fox", seed=3).data)
    image = decode_image(shaped.data)
    assert mean_difference(image, plain) > 20
    left = ImageStat.Stat(image.crop((0, 0, 48, 64)).convert("L")).mean[0]
    right = ImageStat.Stat(image.crop((48, 0, 96, 64)).convert("L")).mean[0]
    assert right - left > 80  # the reference's bright half shows through
    # Strength 0 leaves the picture as if there were no reference.
    [untouched] = LocalImageProvider({}).run(input={**input_, "reference_strength": 0}, input_files=files)
    assert decode_image(untouched.data).tobytes() == plain.tobytes()


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_an_unreadable_reference_image_is_an_input_error(data):
    files = {"reference_image": InputFile.from_bytes(data, content_type="image/png")}
    with pytest.raises(ProviderInputError) as caught:
        LocalImageProvider({}).run(
            input={**SMALL_IMAGE, "prompt": "x", "reference_image": "file_ref"}, input_files=files
        )
    assert caught.value.param == "reference_image"


def test_a_reference_id_without_its_file_is_an_input_error():
    with pytest.raises(ProviderInputError) as caught:
        LocalImageProvider({}).run(input={**SMALL_IMAGE, "prompt": "x", "reference_image": "file_ref"})
    assert caught.value.param == "reference_image"


def test_webp_output():
    output = run_image(prompt="a red fox", format="webp")
    assert (output.data[:4], output.data[8:12]) == (b"RIFF", b"WEBP")
    assert output.content_type == "image/webp"
    assert decode_image(output.data).size == (96, 64)


def test_size_bounds_follow_the_options():
    with pytest.raises(ProviderInputError) as caught:
        LocalImageProvider({}).run(input={"prompt": "x", "width": 2048})
    assert caught.value.param == "width"
    schema = LocalImageProvider.parameters_schema({"max_size": 256})
    assert schema["properties"]["width"]["maximum"] == 256
    assert schema["properties"]["width"]["default"] == 256


def test_image_default_job():
    started = time.perf_counter()
    [output] = LocalImageProvider({}).run(input={"prompt": "a lighthouse on a cliff at night"})
    elapsed = time.perf_counter() - started
    assert decode_image(output.data).size == (512, 512)
    assert elapsed < DEFAULT_JOB_SECONDS


# -- audio --------------------------------------------------------------------------------------


def require_espeak() -> None:
    # CI installs espeak-ng (.ci/install-system-packages); locally its absence skips.
    if shutil.which("espeak-ng") is None:
        if services_required():
            pytest.fail("RIVYA_TEST_REQUIRE_SERVICES=1 but espeak-ng is not installed", pytrace=False)
        pytest.skip("needs espeak-ng (apt-get install espeak-ng)")


def run_audio(options=None, **input_):
    [output] = LocalAudioProvider(options or {}).run(input=input_)
    return output


@pytest.mark.parametrize("engine", ["synth", "espeak"])
def test_audio_is_wav_that_grows_with_the_text_and_is_never_silent(engine):
    if engine == "espeak":
        require_espeak()
    options = {"engine": engine}
    short = run_audio(options, prompt="Hi.")
    long = run_audio(options, prompt="Hi. This sentence is a great deal longer than the first one was.")
    for output in (short, long):
        assert (output.data[:4], output.data[8:12]) == (b"RIFF", b"WAVE")
        assert output.content_type == "audio/wav"
    short_seconds, short_peak = decode_wav(short.data)
    long_seconds, long_peak = decode_wav(long.data)
    assert long_seconds > 2 * short_seconds > 0.2
    assert min(short_peak, long_peak) > 1000
    assert long.metadata["duration_seconds"] == pytest.approx(long_seconds, abs=0.01)


@pytest.mark.parametrize("engine", ["synth", "espeak"])
def test_audio_is_deterministic_and_follows_the_text(engine):
    if engine == "espeak":
        require_espeak()
    options = {"engine": engine}
    first = run_audio(options, prompt="A red fox at dawn.")
    assert run_audio(options, prompt="A red fox at dawn.").data == first.data
    assert run_audio(options, prompt="A blue whale at dusk.").data != first.data


def test_espeak_is_used_when_installed():
    require_espeak()
    assert LocalAudioProvider({}).engine() == "espeak"
    espoken = run_audio(prompt="Hello there.")
    assert espoken.data != run_audio({"engine": "synth"}, prompt="Hello there.").data


def test_without_espeak_auto_falls_back_to_synthesis():
    provider = LocalAudioProvider({"espeak_binary": "rivya-no-such-espeak"})
    assert provider.engine() == "synth"
    [output] = provider.run(input={"prompt": "Still audible."})
    assert decode_wav(output.data)[1] > 1000


def test_text_of_only_pauses_or_other_scripts_still_sounds():
    for prompt in ("...", "नमस्ते दुनिया", "🎵🎶", "12345"):
        duration, peak = decode_wav(run_audio({"engine": "synth"}, prompt=prompt).data)
        assert duration > 0.1, prompt
        assert peak > 1000, prompt


def test_faster_speech_is_shorter():
    slow = decode_wav(run_audio({"engine": "synth"}, prompt="One two three four.", speed=100).data)[0]
    fast = decode_wav(run_audio({"engine": "synth"}, prompt="One two three four.", speed=300).data)[0]
    assert fast < slow * 0.6


def test_ogg_opus_output_decodes():
    output = run_audio({"engine": "synth"}, prompt="Opus in Ogg.", format="ogg")
    assert output.data.startswith(b"OggS")
    assert output.content_type == "audio/ogg"
    with av.open(io.BytesIO(output.data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples / 48000 == pytest.approx(output.metadata["duration_seconds"], abs=0.1)


def test_unknown_voice_is_an_input_error():
    with pytest.raises(ProviderInputError) as caught:
        run_audio(prompt="x", voice="klingon")
    assert caught.value.param == "voice"


def test_audio_default_job():
    started = time.perf_counter()
    output = run_audio(prompt="Welcome to Rivya. Your generation is ready.")
    elapsed = time.perf_counter() - started
    duration, peak = decode_wav(output.data)
    assert duration > 1
    assert peak > 1000
    assert elapsed < DEFAULT_JOB_SECONDS


# -- video --------------------------------------------------------------------------------------


def test_this_pyav_encodes_h264():
    # If a PyAV upgrade drops libx264 the provider falls back (MPEG-4 Part 2, then VP9/WebM);
    # this test says so loudly instead of letting the fallback pass unnoticed.
    assert video_codec()[:3] == ("libx264", "mp4", "video/mp4")


def test_video_is_h264_mp4_with_distinct_frames_and_progress():
    seen: list[int] = []
    [output] = LocalVideoProvider({}).run(input={**SMALL_VIDEO, "prompt": "a red fox"}, progress=seen.append)
    assert output.data[4:8] == b"ftyp"
    assert output.content_type == "video/mp4"
    with av.open(io.BytesIO(output.data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 64)
    frames = decode_video(output.data)
    assert len(frames) == 24
    assert len({frame.tobytes() for frame in frames}) == 24
    # Progress climbs in many steps while encoding, and ends at 100.
    assert seen == sorted(seen)
    assert seen[-1] == 100
    assert len(seen) > 20


@pytest.mark.parametrize(
    ("codec", "decoded_as", "content_type"),
    [("mpeg4", "mpeg4", "video/mp4"), ("libvpx-vp9", "vp9", "video/webm")],
)
def test_fallback_encoders_make_valid_video(codec, decoded_as, content_type):
    small = {**SMALL_VIDEO, "duration": 1, "fps": 8}
    [output] = LocalVideoProvider({"codec": codec}).run(input={**small, "prompt": "a red fox"})
    assert output.content_type == content_type
    if content_type == "video/webm":
        assert output.data.startswith(b"\x1a\x45\xdf\xa3")
        assert b"webm" in output.data[:64]
    else:
        assert output.data[4:8] == b"ftyp"
    with av.open(io.BytesIO(output.data)) as container:
        assert container.streams.video[0].codec_context.name == decoded_as
    assert len({frame.tobytes() for frame in decode_video(output.data)}) == 8


def test_an_unknown_codec_option_is_unavailable():
    with pytest.raises(ProviderUnavailableError):
        LocalVideoProvider({"codec": "no-such-codec"}).run(input={**SMALL_VIDEO, "prompt": "x"})


def test_video_follows_prompt_and_seed():
    def first_frame(**input_):
        [output] = LocalVideoProvider({}).run(input={**SMALL_VIDEO, **input_})
        return decode_video(output.data)[0].convert("RGB")

    base = first_frame(prompt="a red fox", seed=1)
    assert mean_difference(base, first_frame(prompt="a red fox", seed=1)) < 2
    assert mean_difference(base, first_frame(prompt="a blue whale", seed=1)) > 10


def test_odd_video_sizes_are_refused():
    with pytest.raises(ProviderInputError) as caught:
        LocalVideoProvider({}).run(input={**SMALL_VIDEO, "prompt": "x", "width": 97})
    assert caught.value.param == "width"


def test_video_stops_at_the_deadline():
    started = time.perf_counter()
    with pytest.raises(ProviderTimeoutError):
        LocalVideoProvider({}).run(
            input={"prompt": "x", "width": 1280, "height": 720, "duration": 10, "fps": 30},
            deadline=time.monotonic() + 0.3,
        )
    assert time.perf_counter() - started < 3


def test_video_default_job():
    started = time.perf_counter()
    [output] = LocalVideoProvider({}).run(input={"prompt": "waves rolling onto a beach at sunset"})
    elapsed = time.perf_counter() - started
    frames = decode_video(output.data)
    assert len(frames) >= 24
    assert len({frame.tobytes() for frame in frames}) >= 24
    assert frames[0].size == (640, 360)
    assert elapsed < DEFAULT_JOB_SECONDS
