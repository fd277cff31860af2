"""Test doubles of the services' injectable parts: a clock that moves when told, a DNS table."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone


class FrozenClock:
    """A clock that moves only when told to: ``clock()`` now, ``clock.advance(hours=5)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class StaticResolver:
    """A DNS table; unknown names do not resolve. Change ``table`` to rebind a name."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(table or {})
        self.lookups: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return list(self.table[host])


PUBLIC_IP = "93.184.215.14"
