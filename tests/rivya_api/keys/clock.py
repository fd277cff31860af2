"""An injectable clock for authentication and throttling tests (set via RIVYA_API settings)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rivya_api.keys.authentication import APIKeyAuthentication
from rivya_api.keys.throttling import APIKeyRateThrottle


class Clock:
    """Starts at the real time; ``advance`` moves it forward. Shared by the classes below."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


clock = Clock()


class ClockedAPIKeyAuthentication(APIKeyAuthentication):
    def now(self) -> datetime:
        return clock.now


class ClockedAPIKeyRateThrottle(APIKeyRateThrottle):
    def timer(self) -> float:
        return clock.now.timestamp()


CLOCKED = {
    "AUTHENTICATION_CLASSES": ["tests.rivya_api.keys.clock.ClockedAPIKeyAuthentication"],
    "THROTTLE_CLASSES": ["tests.rivya_api.keys.clock.ClockedAPIKeyRateThrottle"],
}
