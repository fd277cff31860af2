"""What a file really is: sniffed from its bytes, then proven by decoding it.

The filename and the client's ``Content-Type`` are never consulted. ``sniff``
looks at the magic bytes only; ``inspect_media`` then decodes the content with
the decoder of that one format (Pillow for images, PyAV/FFmpeg for audio and
video, with the demuxer forced so FFmpeg never guesses), and returns what it
learned: dimensions, duration. Anything that does not decode is refused.

Images are opened lazily, so their dimensions are checked before a single
pixel is decoded: a small file that claims a huge canvas (a decompression
bomb) is refused without allocating it. Then every frame is decoded, so a
truncated image is refused too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from rivya_api.files.exceptions import ImageTooLargeError, InvalidMediaError

HEAD_BYTES = 4096


@dataclass(frozen=True)
class MediaType:
    """One accepted format."""

    name: str
    kind: str  # image | audio | video
    content_type: str
    extension: str
    decoder_format: str  # Pillow format name, or FFmpeg demuxer name


PNG = MediaType("png", "image", "image/png", "png", "PNG")
JPEG = MediaType("jpeg", "image", "image/jpeg", "jpg", "JPEG")
GIF = MediaType("gif", "image", "image/gif", "gif", "GIF")
WEBP = MediaType("webp", "image", "image/webp", "webp", "WEBP")
WAV = MediaType("wav", "audio", "audio/wav", "wav", "wav")
MP3 = MediaType("mp3", "audio", "audio/mpeg", "mp3", "mp3")
OGG = MediaType("ogg", "audio", "audio/ogg", "ogg", "ogg")
MP4 = MediaType("mp4", "video", "video/mp4", "mp4", "mp4")
WEBM = MediaType("webm", "video", "video/webm", "webm", "webm")

MEDIA_TYPES = (PNG, JPEG, GIF, WEBP, WAV, MP3, OGG, MP4, WEBM)
KINDS = ("image", "audio", "video")

# ISO base media brands that are still images or audio, not video.
_NON_VIDEO_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis", b"qt  "}
_NON_VIDEO_BRANDS |= {b"M4A ", b"M4B ", b"M4P ", b"crx "}
_OGG_AUDIO_CODECS = {"opus", "vorbis", "flac"}


@dataclass(frozen=True)
class MediaInfo:
    """What decoding established about a file."""

    media_type: MediaType
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # seconds

    @property
    def kind(self) -> str:
        return self.media_type.kind

    @property
    def content_type(self) -> str:
        return self.media_type.content_type


def _is_mp3_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    # 01 is a reserved version, 00 a reserved layer (and ADTS AAC); 1111 and 11 are invalid.
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and sample_rate != 0b11


def sniff(head: bytes) -> MediaType | None:
    """The accepted format these first bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head.startswith(b"ID3") or _is_mp3_frame(head):
        return MP3
    if head.startswith(b"OggS"):
        return OGG
    if head[4:8] == b"ftyp" and head[8:12] not in _NON_VIDEO_BRANDS:
        return MP4
    # Matroska's EBML header with DocType "webm" (plain .mkv is not accepted).
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"\x42\x82\x84webm" in head[:64]:
        return WEBM
    return None


def inspect_media(fileobj: IO[bytes], media_type: MediaType, limits: Mapping[str, Any]) -> MediaInfo:
    """Decode ``fileobj`` as ``media_type`` and describe it; raise if it does not decode.

    ``limits``: ``image_max_pixels`` (per frame), ``image_max_frames``,
    ``image_max_total_pixels`` (all frames), ``av_decode_frames`` (how many
    frames of audio/video are decoded to prove the stream; the whole container
    is still demuxed, so truncation and corruption in the container are found).
    """
    fileobj.seek(0)
    if media_type.kind == "image":
        return _inspect_image(fileobj, media_type, limits)
    return _inspect_av(fileobj, media_type, limits)


def _inspect_image(fileobj: IO[bytes], media_type: MediaType, limits: Mapping[str, Any]) -> MediaInfo:
    from PIL import Image

    max_pixels = int(limits["image_max_pixels"])
    try:
        with Image.open(fileobj, formats=[media_type.decoder_format]) as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise InvalidMediaError("The image has no pixels.")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"The image is {width}×{height} pixels; at most {max_pixels} pixels are accepted."
                )
            frames = int(getattr(image, "n_frames", 1) or 1)
            if frames > int(limits["image_max_frames"]):
                raise ImageTooLargeError(f"The image has {frames} frames; at most {limits['image_max_frames']}.")
            if width * height * frames > int(limits["image_max_total_pixels"]):
                raise ImageTooLargeError("The animation has more pixels in total than are accepted.")
            for index in range(frames):
                image.seek(index)
                image.load()  # decodes the frame: truncated or corrupt data raises here
    except (ImageTooLargeError, InvalidMediaError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError("The image's dimensions are too large (a decompression bomb).") from exc
    except Exception as exc:  # Pillow raises many types on bad input (OSError, SyntaxError, ValueError, …)
        raise InvalidMediaError(f"The {media_type.name.upper()} image could not be decoded.") from exc
    return MediaInfo(media_type, width=width, height=height)


def _inspect_av(fileobj: IO[bytes], media_type: MediaType, limits: Mapping[str, Any]) -> MediaInfo:
    import av

    label = media_type.name.upper()
    try:
        with av.open(fileobj, mode="r", format=media_type.decoder_format) as container:
            stream = _main_stream(container, media_type)
            if stream is None:
                wanted = "a video" if media_type.kind == "video" else "an audio"
                raise InvalidMediaError(f"The {label} file has no {wanted} stream.")
            decoded, last_end = _decode(container, stream, int(limits["av_decode_frames"]))
            if decoded == 0:
                raise InvalidMediaError(f"The {label} file has no decodable {media_type.kind}.")
            duration = _duration(container, stream, last_end)
            width = height = None
            if media_type.kind == "video":
                width, height = stream.codec_context.width, stream.codec_context.height
                if not width or not height:
                    raise InvalidMediaError(f"The {label} video has no picture size.")
    except InvalidMediaError:
        raise
    except Exception as exc:  # FFmpegError, EOFError, ValueError, …: the decoder refused the content
        raise InvalidMediaError(f"The {label} file could not be decoded.") from exc
    return MediaInfo(media_type, width=width, height=height, duration=duration)


def _main_stream(container: Any, media_type: MediaType) -> Any:
    import av

    if media_type.kind == "video":
        for stream in container.streams.video:
            # Cover art in an audio file is a one-picture "video" stream: not a video.
            if not stream.disposition & av.stream.Disposition.attached_pic:
                return stream if stream.codec_context is not None else None
        return None
    for stream in container.streams.audio:
        if stream.codec_context is None:
            return None
        if media_type is OGG and stream.codec_context.name not in _OGG_AUDIO_CODECS:
            return None
        return stream
    return None


def _decode(container: Any, stream: Any, frame_limit: int) -> tuple[int, float | None]:
    """Demux every packet (finds truncation); decode the main stream's first ``frame_limit`` frames."""
    decoded = 0
    last_end: float | None = None
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            last_end = end if last_end is None else max(last_end, end)
        if decoded < frame_limit:
            decoded += len(packet.decode())
    return decoded, last_end


def _duration(container: Any, stream: Any, last_end: float | None) -> float | None:
    import av

    seconds: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    elif last_end is not None:
        seconds = last_end
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return round(seconds, 3)
