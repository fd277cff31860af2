"""Real media made in memory for tests (Pillow, PyAV, wave): nothing is downloaded.

Each function returns the bytes of a small, valid file of one format; the
``bomb_png`` and ``undecodable_*`` helpers make the hostile inputs the Files
API must refuse.
"""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from fractions import Fraction

from PIL import Image


def _image(fmt: str, size: tuple[int, int] = (64, 48), color: str = "teal", **save: object) -> bytes:
    buffer = io.BytesIO()
    picture = Image.new("RGB", size, color)
    # A few shapes, so compression has something to do and truncation bites.
    for x in range(0, size[0], 4):
        for y in range(0, size[1], 4):
            picture.putpixel((x, y), ((x * 7) % 256, (y * 5) % 256, 128))
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    return _image("PNG", size)


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    return _image("JPEG", size, quality=90)


def webp(size: tuple[int, int] = (64, 48)) -> bytes:
    return _image("WEBP", size, quality=80)


def gif(size: tuple[int, int] = (40, 30), frames: int = 3) -> bytes:
    colors = ["red", "green", "blue", "yellow", "purple", "orange"]
    pictures = [Image.new("RGB", size, colors[index % len(colors)]) for index in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, "GIF", save_all=True, append_images=pictures[1:], duration=100, loop=0)
    return buffer.getvalue()


def bomb_png(side: int = 30_000) -> bytes:
    """A valid ~100 KB PNG whose canvas is ``side``×``side`` 1-bit pixels: decoding it would take GBs."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed 1-bit pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def _encode_audio(container_format: str, codec: str, seconds: float = 0.5, rate: int = 48000) -> bytes:
    import av
    import av.audio.frame

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = stream.codec_context.frame_size or 1024
        total = int(seconds * rate)
        done = 0
        sample_format = stream.codec_context.format.name
        while done < total:
            count = min(frame_size, total - done)
            frame = av.audio.frame.AudioFrame(format=sample_format, layout="mono", samples=count)
            values = [math.sin(2 * math.pi * 440 * (done + i) / rate) * 0.3 for i in range(count)]
            if sample_format.startswith("flt"):
                raw = struct.pack(f"<{count}f", *values)
            else:
                raw = struct.pack(f"<{count}h", *(int(v * 32767) for v in values))
            frame.planes[0].update(raw + b"\x00" * (frame.planes[0].buffer_size - len(raw)))
            frame.sample_rate = rate
            frame.pts = done
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
            done += count
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def mp3(seconds: float = 0.5) -> bytes:
    return _encode_audio("mp3", "libmp3lame", seconds, rate=44100)


def ogg_opus(seconds: float = 0.5) -> bytes:
    return _encode_audio("ogg", "libopus", seconds, rate=48000)


def _encode_video(container_format: str, codec: str, frames: int = 12, size: tuple[int, int] = (64, 48)) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            picture = Image.new("RGB", size, ((index * 20) % 256, 80, 160))
            frame = av.VideoFrame.from_image(picture)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def mp4(frames: int = 12, size: tuple[int, int] = (64, 48)) -> bytes:
    return _encode_video("mp4", "libx264", frames, size)


def webm(frames: int = 12, size: tuple[int, int] = (64, 48)) -> bytes:
    return _encode_video("webm", "libvpx", frames, size)


def undecodable_wav() -> bytes:
    """A RIFF/WAVE header whose body is not audio at all."""
    return b"RIFF\x00\x10\x00\x00WAVEfmt " + bytes(range(256)) * 8


def undecodable_mp3() -> bytes:
    """An ID3 tag followed by bytes that contain no MPEG audio frame."""
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00\x11\x22\x33" * 1024
