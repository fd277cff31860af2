"""Deterministic pictures from a prompt and a seed, for the local image and video providers.

A :class:`Scene` is everything random about a picture (palette, background
gradient, shapes and how they move), drawn from a generator seeded by
SHA-256 of the prompt and the seed, so the same pair always gives the same
scene and any change to either gives another. Colours come from the prompt's
words, so related prompts share hues. Only Pillow is used; nothing here reads
the clock or global random state.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageOps

RGB = tuple[int, int, int]

_WORD = re.compile(r"\w+", re.UNICODE)


def prompt_seed(prompt: str) -> int:
    """The default seed of a prompt: 32 bits of its SHA-256."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def scene_random(prompt: str, seed: int, purpose: str) -> random.Random:
    # ``random.Random(int)`` gives the same sequence on every platform and Python 3 version.
    digest = hashlib.sha256(f"{purpose}\0{seed}\0{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


# Words that name a colour (or strongly suggest one) keep that hue, so "a red fox" looks red-ish;
# every other word gets a hue from its hash.
COLOUR_WORDS = {
    "red": 0.0,
    "crimson": 0.97,
    "fire": 0.03,
    "orange": 0.07,
    "sunset": 0.06,
    "dawn": 0.08,
    "autumn": 0.08,
    "gold": 0.12,
    "golden": 0.12,
    "yellow": 0.15,
    "sun": 0.14,
    "lime": 0.24,
    "green": 0.33,
    "forest": 0.32,
    "grass": 0.28,
    "leaf": 0.3,
    "teal": 0.47,
    "cyan": 0.5,
    "sea": 0.55,
    "ocean": 0.57,
    "sky": 0.58,
    "blue": 0.62,
    "water": 0.56,
    "night": 0.66,
    "indigo": 0.7,
    "purple": 0.78,
    "violet": 0.76,
    "magenta": 0.85,
    "pink": 0.92,
    "rose": 0.95,
}


def _word_hue(word: str) -> float:
    word = word.lower()
    if word in COLOUR_WORDS:
        return COLOUR_WORDS[word]
    return hashlib.sha256(word.encode()).digest()[0] / 256


def _colour(hue: float, lightness: float, saturation: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True)
class Sprite:
    """A shape drawn once, then placed on an orbit: ``centre + radius·(cos, sin)(2π(turns·t + phase))``."""

    image: Image.Image  # RGBA, alpha used as the paste mask
    centre: tuple[float, float]  # fractions of the frame
    radius: tuple[float, float]  # fractions of the frame
    turns: int  # whole turns over the clip, so the motion loops
    phase: float

    def position(self, t: float, width: int, height: int) -> tuple[int, int]:
        angle = 2 * math.pi * (self.turns * t + self.phase)
        x = (self.centre[0] + self.radius[0] * math.cos(angle)) * width - self.image.width / 2
        y = (self.centre[1] + self.radius[1] * math.sin(angle)) * height - self.image.height / 2
        return round(x), round(y)


class Scene:
    """The picture for ``(prompt, seed)`` at ``width``×``height``; ``frame(t)`` draws it at time t∈[0, 1]."""

    # The background is drawn larger than the frame and panned across for video.
    PAN = 0.25

    def __init__(self, *, prompt: str, seed: int, width: int, height: int, sprites: int = 12) -> None:
        self.width = width
        self.height = height
        rng = scene_random(prompt, seed, "scene")
        words = _WORD.findall(prompt) or [prompt]
        words = [word for word in words if len(word) > 2] or words  # "a", "of", "at" colour nothing
        # Colour words come first so they dominate the palette.
        words = sorted(words[:12], key=lambda word: word.lower() not in COLOUR_WORDS)
        hues = [(_word_hue(word) + rng.uniform(-0.04, 0.04)) for word in words[:8]]
        self.palette = [_colour(h, rng.uniform(0.35, 0.7), rng.uniform(0.55, 0.95)) for h in hues]
        while len(self.palette) < 3:
            base = hues[0] + rng.uniform(0.2, 0.5) * len(self.palette)
            self.palette.append(_colour(base, rng.uniform(0.3, 0.7), rng.uniform(0.5, 0.9)))
        self.background = self._background(rng)
        self.sprites = [self._sprite(rng) for _ in range(sprites)]

    def _background(self, rng: random.Random) -> Image.Image:
        size = (round(self.width * (1 + self.PAN)), round(self.height * (1 + self.PAN)))
        dark = _colour(rng.random(), rng.uniform(0.08, 0.25), rng.uniform(0.3, 0.8))
        first, second = rng.sample(self.palette, 2)
        ramp = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
        ramp = [ramp, ramp.transpose(Image.Transpose.ROTATE_90).resize(size)][rng.randrange(2)]
        if rng.random() < 0.5:
            ramp = ImageOps.mirror(ramp)
        if rng.random() < 0.5:
            ramp = ImageOps.flip(ramp)
        base = ImageOps.colorize(ramp, dark, first)
        glow = ImageOps.colorize(Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR), second, dark)
        return Image.blend(base, glow, rng.uniform(0.25, 0.5))

    def _sprite(self, rng: random.Random) -> Sprite:
        short = min(self.width, self.height)
        w = max(4, round(short * rng.uniform(0.12, 0.45)))
        h = max(4, round(w * rng.uniform(0.5, 1.5)))
        pad = max(2, w // 8)
        image = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        fill = (*rng.choice(self.palette), rng.randrange(110, 230))
        box = (pad, pad, pad + w, pad + h)
        shape = rng.randrange(4)
        if shape == 0:
            draw.ellipse(box, fill=fill)
        elif shape == 1:
            draw.rounded_rectangle(box, radius=rng.randrange(0, max(1, min(w, h) // 2)), fill=fill)
        elif shape == 2:
            r = min(w, h) / 2
            draw.regular_polygon((pad + w / 2, pad + h / 2, r), rng.randrange(3, 8), rng.uniform(0, 360), fill=fill)
        else:
            width = max(2, min(w, h) // 6)
            draw.arc(box, rng.uniform(0, 180), rng.uniform(200, 360), fill=fill, width=width)
        if rng.random() < 0.5:
            image = image.filter(ImageFilter.GaussianBlur(pad / 2))
        return Sprite(
            image=image,
            centre=(rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)),
            radius=(rng.uniform(0.03, 0.25), rng.uniform(0.03, 0.25)),
            turns=rng.choice((-2, -1, 1, 2)),
            phase=rng.random(),
        )

    def frame(self, t: float = 0.0) -> Image.Image:
        """The RGB picture at time ``t`` (0 for a still image); panning makes every step of t differ."""
        dx = round(self.width * self.PAN * t)
        dy = round(self.height * self.PAN * t / 2)
        image = self.background.crop((dx, dy, dx + self.width, dy + self.height))
        for sprite in self.sprites:
            image.paste(sprite.image, sprite.position(t, self.width, self.height), sprite.image)
        return image


def apply_reference(image: Image.Image, reference: Image.Image, strength: float) -> Image.Image:
    """Blend ``reference`` (cropped to fill) into ``image``: 0 leaves it, 1 gives the reference."""
    fitted = ImageOps.fit(reference.convert("RGB"), image.size, method=Image.Resampling.BILINEAR)
    return Image.blend(image, fitted, strength)
