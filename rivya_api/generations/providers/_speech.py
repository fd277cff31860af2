"""Audio from text for the local audio provider: espeak-ng speech, or a formant-like synthesis.

:func:`espeak` runs the ``espeak-ng`` binary (text on stdin, WAV on stdout) and
returns its 16-bit mono samples. Its streamed WAV header carries placeholder
sizes, so only the ``fmt`` and ``data`` chunks are read and the file is
written again by :func:`wav_bytes`.

:func:`synthesize` needs nothing installed. Each character becomes a short
sound: vowels a voiced segment with vowel formants, voiced consonants a
lower, shorter one, unvoiced consonants filtered noise, digits a tone,
spaces and punctuation pauses, all over a falling pitch that resets after
each sentence (never below ``PITCH_FLOOR``, so the work per letter is
bounded). One pitch period of each voiced sound is computed once (a sum of
harmonics weighted by formant resonances) and repeated, so synthesis is
quick in pure Python. It is not speech, but it follows the text: the same
text gives the same samples and a longer text lasts longer.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import shutil
import subprocess
import sys
import unicodedata
import wave
from array import array
from functools import lru_cache

SAMPLE_RATE = 22050
FULL_SCALE = 32767

# First three formants (Hz) of the vowels; other letters borrow one by class.
VOWELS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
    "y": (300, 2000, 2700),
}
VOICED = {
    "b": (300, 1100, 2300),
    "d": (300, 1700, 2600),
    "g": (300, 1500, 2400),
    "j": (280, 2100, 2900),
    "l": (360, 1300, 2700),
    "m": (280, 1000, 2300),
    "n": (280, 1500, 2500),
    "r": (420, 1300, 1600),
    "v": (300, 1200, 2400),
    "w": (300, 700, 2200),
    "z": (320, 1500, 2600),
}
SIBILANTS = set("scxz")
PLOSIVES = set("ptkq")
PAUSES = {".": 0.22, "!": 0.22, "?": 0.22, ",": 0.12, ";": 0.14, ":": 0.14, "\n": 0.2, "।": 0.22}
SENTENCE_END = set(".!?\n।")
BANDWIDTHS = (90.0, 110.0, 170.0)
# The declining pitch never goes below a low voice: one period of a pitch near 0 Hz would be
# millions of samples with thousands of harmonics (issue 21: a 250-letter sentence ran for minutes).
PITCH_FLOOR = 80.0


class SpeechError(Exception):
    """espeak-ng failed or produced nothing usable."""


# -- WAV --------------------------------------------------------------------------------------


def wav_bytes(samples: array, sample_rate: int) -> bytes:
    """16-bit mono PCM WAV with correct sizes (deterministic: no metadata chunks)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(_little_endian(samples).tobytes())
    return buffer.getvalue()


def _little_endian(samples: array) -> array:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples


def peak(samples: array) -> int:
    return max((abs(s) for s in samples), default=0)


# -- espeak-ng --------------------------------------------------------------------------------


def espeak_available(binary: str = "espeak-ng") -> bool:
    return shutil.which(binary) is not None


def espeak(
    text: str, *, voice: str, words_per_minute: int, timeout: float, binary: str = "espeak-ng"
) -> tuple[array, int]:
    """``(samples, sample_rate)`` of ``text`` spoken by espeak-ng.

    The text goes through stdin, never the command line, so it cannot be read
    as an option. Raises :class:`SpeechError` or ``subprocess.TimeoutExpired``.
    """
    path = shutil.which(binary)
    if path is None:
        raise SpeechError(f"{binary} is not installed")
    command = [path, "--stdout", "--stdin", "-b", "1", "-v", voice, "-s", str(words_per_minute)]
    result = subprocess.run(command, input=text.encode(), capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SpeechError(f"espeak-ng exited {result.returncode}: {result.stderr[:200]!r}")
    return _parse_streamed_wav(result.stdout)


def _parse_streamed_wav(data: bytes) -> tuple[array, int]:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError("espeak-ng wrote no WAV")
    offset, sample_rate = 12, 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        body = offset + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            sample_rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if channels != 1 or bits != 16:
                raise SpeechError("espeak-ng wrote an unexpected sample format")
        elif chunk == b"data":
            # The streamed header's size is a placeholder: the samples run to the end.
            pcm = data[body:]
            samples = array("h")
            samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
            if not sample_rate:
                raise SpeechError("espeak-ng wrote no format chunk")
            return _little_endian(samples), sample_rate
        offset = body + size + (size % 2)
    raise SpeechError("espeak-ng wrote no samples")


# -- synthesis --------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _voiced_period(formants: tuple[int, int, int], period: int, gain: float) -> array:
    """One pitch period (``period`` samples) of a voiced sound with these formants, peak ≈ ``gain``."""
    f0 = SAMPLE_RATE / period
    harmonics = []
    k = 1
    while k * f0 < 4500:
        f = k * f0
        amp = sum(1.0 / (1.0 + ((f - fi) / bw) ** 2) for fi, bw in zip(formants, BANDWIDTHS, strict=True))
        harmonics.append((k, amp / math.sqrt(k)))  # the glottal source falls off with frequency
        k += 1
    wave_ = [sum(a * math.sin(2 * math.pi * k * n / period) for k, a in harmonics) for n in range(period)]
    top = max(abs(v) for v in wave_) or 1.0
    return array("h", (round(v / top * gain * FULL_SCALE) for v in wave_))


@lru_cache(maxsize=2)
def _noise(sibilant: bool) -> array:
    # Fixed-seed noise: synthesis never touches global random state, so output is reproducible.
    rng = random.Random(0x5EED)
    raw = [rng.uniform(-1, 1) for _ in range(SAMPLE_RATE)]
    if sibilant:  # a first difference tilts the noise towards the high "s" band
        raw = [raw[i] - raw[i - 1] for i in range(len(raw))]
    top = max(abs(v) for v in raw)
    return array("h", (round(v / top * 0.35 * FULL_SCALE) for v in raw))


def _shaped(samples: array, attack: int, release: int) -> array:
    """Linear fade in and out so segments join without clicks (only the edges are touched)."""
    n = len(samples)
    attack, release = min(attack, n // 2), min(release, n // 2)
    for i in range(attack):
        samples[i] = samples[i] * i // attack
    for i in range(release):
        samples[n - 1 - i] = samples[n - 1 - i] * i // release
    return samples


def _voiced(formants: tuple[int, int, int], seconds: float, pitch: float, gain: float) -> array:
    period = _voiced_period(formants, max(20, round(SAMPLE_RATE / pitch)), gain)
    count = max(1, round(seconds * SAMPLE_RATE))
    repeated = period * (count // len(period) + 1)
    return _shaped(repeated[:count], SAMPLE_RATE // 125, SAMPLE_RATE // 60)


def _unvoiced(char: str, seconds: float) -> array:
    table = _noise(char in SIBILANTS)
    count = max(1, round(seconds * SAMPLE_RATE))
    start = hashlib.sha256(char.encode()).digest()[0] * 64 % (len(table) - count)
    return _shaped(table[start : start + count], SAMPLE_RATE // 250, SAMPLE_RATE // 100)


def _tone(frequency: float, seconds: float) -> array:
    count = max(1, round(seconds * SAMPLE_RATE))
    samples = array(
        "h", (round(0.5 * FULL_SCALE * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE)) for n in range(count))
    )
    return _shaped(samples, SAMPLE_RATE // 200, SAMPLE_RATE // 50)


def _silence(seconds: float) -> array:
    return array("h", bytes(2 * round(seconds * SAMPLE_RATE)))


def _letter_class(char: str) -> str:
    """The Latin letter a character sounds like: itself, its base letter, or one chosen by hash."""
    base = unicodedata.normalize("NFKD", char)[0].lower()
    if base in VOWELS or base in VOICED or base.isascii() and base.isalpha():
        return base
    # Other scripts (Devanagari, Cyrillic, emoji …): pick a stable letter so each still sounds.
    letters = "aeiouybdglmnrvstkp"
    return letters[hashlib.sha256(char.encode()).digest()[0] % len(letters)]


def synthesize(text: str, *, words_per_minute: int = 165) -> tuple[array, int]:
    """``(samples, sample_rate)`` of formant-like sounds following ``text``; never silent."""
    pace = 165 / max(40, words_per_minute)
    out = array("h")
    pitch_step, pitch = 0, 140.0
    for char in text:
        if char in PAUSES:
            out.extend(_silence(PAUSES[char] * pace))
            if char in SENTENCE_END:
                pitch_step = 0
            continue
        if char.isspace():
            out.extend(_silence(0.06 * pace))
            continue
        # Declination: the pitch falls through a sentence and is reset at its end.
        pitch = max(PITCH_FLOOR, 140.0 * (0.985**pitch_step) + 10 * math.sin(pitch_step / 3))
        pitch_step += 1
        if char.isdigit():
            out.extend(_tone(380 + 70 * int(unicodedata.digit(char, 0)), 0.12 * pace))
            continue
        letter = _letter_class(char)
        if letter in VOWELS:
            out.extend(_voiced(VOWELS[letter], 0.11 * pace, pitch, 0.7))
        elif letter in VOICED:
            out.extend(_voiced(VOICED[letter], 0.06 * pace, pitch * 0.95, 0.45))
        elif letter in PLOSIVES:
            out.extend(_silence(0.03 * pace))
            out.extend(_unvoiced(letter, 0.025 * pace))
        else:
            out.extend(_unvoiced(letter, 0.07 * pace))
    if peak(out) == 0:  # only pauses: say something rather than nothing
        out.extend(_voiced(VOWELS["a"], 0.2, 120.0, 0.7))
    return out, SAMPLE_RATE
