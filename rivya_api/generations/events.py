"""The webhook event types generations publish, registered with rivya_webhooks at startup."""

from __future__ import annotations

from rivya_webhooks.registry import event_type_register

EVENT_TYPES = {
    "generation.succeeded": "A generation finished; its outputs are ready and its price was charged.",
    "generation.failed": "A generation failed; everything reserved for it was released.",
    "generation.canceled": "A generation was canceled; everything reserved for it was released.",
}


def register_generation_event_types() -> None:
    for name, description in EVENT_TYPES.items():
        event_type_register(name, description)
