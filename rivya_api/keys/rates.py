"""Rates as the settings write them: ``"1200/min"``, ``"50/10s"``, ``"off"``."""

from __future__ import annotations

import re

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*")


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"1200/min"`` -> ``(1200, 60)``; ``"50/10s"`` -> ``(50, 10)``; ``"off"`` or empty -> None."""
    if rate is None or rate.strip().lower() in ("", "off", "none"):
        return None
    match = _RATE.fullmatch(rate.lower())
    if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
        raise ValueError(f"Invalid RIVYA_API RATE_LIMIT {rate!r}: expected e.g. '1200/min' or '50/10s'.")
    window = int(match.group(2) or 1) * _UNITS[match.group(3)]
    return int(match.group(1)), window
