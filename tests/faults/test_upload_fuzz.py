"""Malformed media at volume against ``POST /api/v1/files`` on the running stack.

Every format the Files API accepts, made valid in memory and then broken in
the ways real uploads are broken: cut short, bytes flipped, chunks repeated,
headers that claim enormous dimensions or absurd sizes, foreign magic numbers,
random bytes. Each upload must be answered below 500, refusals in the error
shape, and no web process may die doing it (the same worker pids answer
before and after, so a crash that the process manager quietly replaced still
fails the test).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests import media
from tests.faults.harness import report

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]

SEED = 1414
CONTENT_TYPES = {
    "png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "wav": "audio/wav",
    "mp3": "audio/mpeg", "ogg": "audio/ogg", "mp4": "video/mp4", "webm": "video/webm",
}  # fmt: skip


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted() -> list[tuple[str, str, bytes]]:
    """Hand-made hostile headers: (case name, filename, bytes)."""
    signature = b"\x89PNG\r\n\x1a\n"
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    cases = [
        ("png 100000x100000 header", "huge.png",
         signature + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + idat
         + _png_chunk(b"IEND", b"")),
        ("png 0x0 header", "zero.png",
         signature + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)) + idat
         + _png_chunk(b"IEND", b"")),
        ("png bad crc", "crc.png", media.png()[:29] + b"\xde\xad\xbe\xef" + media.png()[33:]),
        ("png decompression bomb", "bomb.png", media.bomb_png()),
        ("png signature only", "sig.png", signature),
        ("jpeg 65500x65500 SOF", "huge.jpg", _jpeg_with_size(65_500, 65_500)),
        ("jpeg 0x0 SOF", "zero.jpg", _jpeg_with_size(0, 0)),
        ("jpeg markers only", "soi.jpg", b"\xff\xd8\xff\xd9"),
        ("gif 65535x65535 screen", "huge.gif", b"GIF89a" + struct.pack("<HH", 65535, 65535) + media.gif()[10:]),
        ("wav 0 channels", "zero.wav", _wav_header(channels=0, rate=8000, data=b"\x00" * 64)),
        ("wav 0 Hz", "hz.wav", _wav_header(channels=1, rate=0, data=b"\x00" * 64)),
        ("wav undecodable", "junk.wav", media.undecodable_wav()),
        ("mp3 without frames", "junk.mp3", media.undecodable_mp3()),
        ("mp4 box of 4 GiB", "box.mp4", struct.pack(">I", 0xFFFFFFFF) + b"ftypisom" + b"\x00" * 64),
        ("mp4 ftyp only", "ftyp.mp4", media.mp4()[:32]),
        ("webm EBML header only", "ebml.webm", media.webm()[:40]),
        ("ogg capture pattern only", "page.ogg", b"OggS" + b"\x00" * 23),
        ("empty", "empty.png", b""),
        ("one byte", "one.bin", b"\x89"),
        ("png magic, mp4 body", "poly.png", signature + media.mp4()),
        ("text", "notes.txt", b"hello, this is not media\n" * 40),
    ]  # fmt: skip
    return cases


# Decodable despite the header's lie; stored with the duration measured from the samples, not the header.
LYING_WAV = ("wav data size 4 GiB", "big.wav", None)


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(media.jpeg())
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at != -1:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise AssertionError("no SOF marker in the sample JPEG")


def _wav_header(*, channels: int, rate: int, data: bytes, size: int | None = None) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * max(channels, 1) * 2, max(channels, 1) * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size or len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


def mutated(rng: random.Random) -> list[tuple[str, str, bytes]]:
    """Each valid sample cut short at several points, with flipped bytes, and with a chunk repeated."""
    samples = {
        "png": media.png(), "jpeg": media.jpeg(), "gif": media.gif(), "webp": media.webp(), "wav": media.wav(),
        "mp3": media.mp3(), "ogg": media.ogg_opus(), "mp4": media.mp4(), "webm": media.webm(),
    }  # fmt: skip
    cases = []
    for kind, data in samples.items():
        filename = f"sample.{kind}"
        for fraction in (0.02, 0.1, 0.3, 0.5, 0.75, 0.95):
            cases.append((f"{kind} truncated to {fraction:.0%}", filename, data[: max(1, int(len(data) * fraction))]))
        for round_ in range(6):
            garbled = bytearray(data)
            for _ in range(1 + round_ * 3):
                # Past the magic number, so the content is still sniffed as this type.
                garbled[rng.randrange(min(16, len(data) - 1), len(data))] = rng.randrange(256)
            cases.append((f"{kind} garbled #{round_}", filename, bytes(garbled)))
        start = rng.randrange(16, len(data) // 2)
        cases.append((f"{kind} chunk repeated", filename, data[:start] + data[start : start + 256] * 4 + data[start:]))
        cases.append((f"{kind} random tail", filename, data[: len(data) // 2] + rng.randbytes(len(data) // 2)))
    for index in range(6):
        cases.append((f"random bytes #{index}", "random.bin", rng.randbytes(rng.choice([16, 512, 4096, 65536]))))
    return cases


def test_malformed_uploads_are_refused_cleanly_and_crash_nothing(make_stack):
    stack = make_stack(roles=("web",))
    secret = stack.bootstrap("fuzz", credits=0)
    lying = _wav_header(channels=1, rate=8000, data=b"\x00" * 64, size=0xFFFFFFF0)
    cases = [*crafted(), (LYING_WAV[0], LYING_WAV[1], lying), *mutated(random.Random(SEED))]
    workers_before = sorted(stack.web_worker_pids())

    def upload(case: tuple[str, str, bytes]) -> tuple[str, int, httpx.Response]:
        name, filename, data = case
        content_type = CONTENT_TYPES.get(filename.rsplit(".", 1)[-1], "application/octet-stream")
        with stack.client(secret, timeout=90) as client:
            response = client.post(
                "/api/v1/files", files={"file": (filename, data, content_type)}, data={"purpose": "reference"}
            )
        return name, response.status_code, response

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(upload, cases))

    statuses = Counter(status for _, status, _ in results)
    report("upload fuzz", {"uploads": len(results), "statuses": dict(sorted(statuses.items()))})
    server_errors = [(name, status, response.text[:300]) for name, status, response in results if status >= 500]
    assert not server_errors, server_errors
    for name, status, response in results:
        if status >= 400:
            assert response.headers["content-type"].startswith("application/json"), name
            error = response.json()["error"]
            assert error["code"], name
            assert error["request_id"] == response.headers["x-request-id"], name
        else:
            assert status == 201, (name, status, response.text[:300])
    # The crafted hostile headers are refused, not stored.
    refused = {name for name, status, _ in results if status >= 400}
    assert {name for name, _, _ in crafted()} <= refused
    (lying_response,) = [response for name, _, response in results if name == LYING_WAV[0]]
    if lying_response.status_code == 201:
        assert lying_response.json()["duration"] < 1, lying_response.json()
    assert sorted(stack.web_worker_pids()) == workers_before, "a web process died and was replaced"
    assert stack.processes["web"].alive()
    assert httpx.get(stack.base_url + "/healthz", timeout=5).status_code == 200
