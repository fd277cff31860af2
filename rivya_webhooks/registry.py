"""The registry of event types.

The app that publishes a type registers it, usually in its ``AppConfig.ready``::

    from rivya_webhooks.registry import event_type_register
    event_type_register("generation.succeeded", "A generation finished with outputs.")

Endpoints can subscribe only to registered types (or ``*``), and
``webhook_event_publish`` refuses unregistered ones, so a typo fails loudly.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

ALL_EVENTS = "*"
_TYPE_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


@dataclass(frozen=True)
class EventType:
    name: str
    description: str


_registry: dict[str, EventType] = {}
_lock = threading.Lock()


def event_type_register(name: str, description: str = "") -> EventType:
    """Register ``name`` (``resource.action``, lower case); registering it again is a no-op."""
    if not _TYPE_RE.match(name):
        raise ValueError(f"Event type {name!r} must look like 'resource.action' (a-z, 0-9, _).")
    with _lock:
        existing = _registry.get(name)
        if existing is not None:
            return existing
        event_type = _registry[name] = EventType(name=name, description=description)
        return event_type


def event_type_unregister(name: str) -> None:
    """Forget ``name`` (tests that register throwaway types clean up with this)."""
    with _lock:
        _registry.pop(name, None)


def event_type_is_registered(name: str) -> bool:
    return name in _registry


def event_types() -> list[EventType]:
    """Every registered type, sorted by name."""
    return sorted(_registry.values(), key=lambda item: item.name)


def register_builtin_event_types() -> None:
    event_type_register("webhook.test", "Sent by the test action of an endpoint, to that endpoint only.")
    event_type_register(
        "webhook_endpoint.disabled",
        "An endpoint was disabled: it answered 410 Gone, or its deliveries failed for 5 days straight.",
    )
