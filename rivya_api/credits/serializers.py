"""Serializers of the credits resource: filters in, the wallet and its ledger entries out."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from rivya_api.common.fields import ChoiceField
from rivya_api.common.reused_fields import ReusedFieldsMixin
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import StrictSerializer
from rivya_api.credits.references import public_reference
from rivya_billing.models import EntryType

ENTRY_TYPES = [t.value for t in EntryType]


def public_actor(actor: str) -> str | None:
    """Who caused an entry, as the account may see it: a key id, ``user`` or ``system`` (never a pk)."""
    if not actor:
        return None
    if actor.startswith("key_"):
        return actor
    kind = actor.split(":", 1)[0]
    return kind if kind in ("user", "system") else "other"


class CreditsActivitySerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="Start of the window (now minus `days`).")
    days = serializers.IntegerField(help_text="Length of the window in days.")
    granted = serializers.IntegerField(help_text="Credits added by grants.")
    reserved = serializers.IntegerField(help_text="Credits held for work when it was accepted.")
    charged = serializers.IntegerField(help_text="Credits taken by work that completed (`settle` + `overrun`).")
    released = serializers.IntegerField(
        help_text="Held credits returned uncharged (`release`, and `expire` of a hold whose work stopped)."
    )
    expired = serializers.IntegerField(
        help_text="Credits that left the wallet unspent at a grant's expiry (`expire` without `hold_id`)."
    )
    refunded = serializers.IntegerField(help_text="Charged credits given back (`refund`).")
    adjusted = serializers.IntegerField(help_text="Net of corrections by support (`adjust`, may be negative).")


class CreditsExpiringSerializer(serializers.Serializer):
    credits = serializers.IntegerField(
        help_text="What is left of the grant: it leaves the wallet at `expires_at` unless spent first (spending "
        "draws the grant that expires soonest first). Credits held by work in progress are never taken: the "
        "work's charge draws them, or, if it is released, they leave at the next expiry run."
    )
    expires_at = serializers.DateTimeField(help_text="When it expires (in the past: held, see `credits`).")


# Made and read at once on every GET /credits: its fields are copied once per thread (rivya_api.common.reused_fields).
class CreditsOutputSerializer(ReusedFieldsMixin, serializers.Serializer):
    object = constant_field("credits")
    balance = serializers.IntegerField(help_text="Credits owned.")
    held = serializers.IntegerField(help_text="Credits reserved by work in progress.")
    available = serializers.IntegerField(help_text="`balance - held`: what new work can reserve.")
    unit = serializers.CharField(help_text="What one unit of these integers is called.")
    updated_at = serializers.DateTimeField(allow_null=True, help_text="Last change of the wallet; null if never.")
    activity = CreditsActivitySerializer(help_text="Totals of the ledger over the recent window.")
    expiring = CreditsExpiringSerializer(
        many=True, help_text="Grants that expire, soonest first (at most 20); empty if none."
    )


# The serializer's own DateTimeField: the host's DATETIME_FORMAT and the active time zone, as the field above.
_DATETIME = serializers.DateTimeField()
_ACTIVITY_TOTALS = ("granted", "reserved", "charged", "released", "expired", "refunded", "adjusted")


def _opt(convert: Any, value: Any) -> Any:
    return None if value is None else convert(value)  # DRF renders a None attribute as None, any field


def credits_output(body: dict[str, Any]) -> dict[str, Any]:
    """``CreditsOutputSerializer(body).data`` built by hand: the same keys in the same order, the same
    values (each through what the serializer's field does with it), without DRF's walk over bound
    fields on every GET. ``RIVYA_API["CREDITS_BODY_PLAIN"] = False`` renders with the serializer;
    ``tests/rivya_api/credits/test_credits_output.py`` compares the two field by field."""
    when = _DATETIME.to_representation
    activity = body["activity"]
    if activity is not None:
        activity = {
            "since": _opt(when, activity["since"]),
            "days": _opt(int, activity["days"]),
            **{name: _opt(int, activity[name]) for name in _ACTIVITY_TOTALS},
        }
    expiring = body["expiring"]
    if expiring is not None:
        expiring = [{"credits": _opt(int, g["credits"]), "expires_at": _opt(when, g["expires_at"])} for g in expiring]
    return {
        "object": "credits",
        "balance": _opt(int, body["balance"]),
        "held": _opt(int, body["held"]),
        "available": _opt(int, body["available"]),
        "unit": _opt(str, body["unit"]),
        "updated_at": _opt(when, body["updated_at"]),
        "activity": activity,
        "expiring": expiring,
    }


# Credits are BIGINT: a threshold above this could never be compared with a balance anyway.
MAX_THRESHOLD = 2**62


class CreditsAlertsOutputSerializer(serializers.Serializer):
    object = constant_field("credits_alerts")
    low_balance_threshold = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "A `credits.low` event is published when `available` falls below this; null: no alert. "
            "Once per crossing: the alert re-arms when `available` is back at the threshold or above."
        ),
    )
    low_balance_triggered = serializers.BooleanField(
        help_text="True from the crossing that published `credits.low` until the alert re-arms."
    )
    available = serializers.IntegerField(help_text="The account's available credits now (`balance - held`).")


class CreditsAlertsUpdateInputSerializer(StrictSerializer):
    low_balance_threshold = serializers.IntegerField(
        allow_null=True,
        required=False,
        min_value=1,
        max_value=MAX_THRESHOLD,
        help_text=(
            "A positive number of credits, or null to turn the alert off (absent: unchanged). A new threshold "
            "starts armed: if `available` is already below it, `credits.low` is published right away."
        ),
    )


class LedgerFilterSerializer(serializers.Serializer):
    type = ChoiceField(choices=ENTRY_TYPES, required=False)
    reference = serializers.CharField(
        max_length=255,
        required=False,
        help_text="A task (`task_…`), chat message (`msg_…`) or chat session (`chat_…`) id, or an action's reference.",
    )


class LedgerEntryOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id", help_text="`le_…`")
    object = constant_field("ledger_entry")
    sequence = serializers.IntegerField(help_text="Position in the wallet's ledger: 1, 2, 3 … without gaps.")
    type = serializers.ChoiceField(
        choices=ENTRY_TYPES,
        help_text=(
            "`grant` adds credits; `reserve` holds them for accepted work; `settle` charges from a hold and "
            "`release` returns what was not used; `expire` with a `hold_id` returns a hold whose work stopped "
            "responding, and without one is what was left of an expiring grant at its expiry (it leaves the "
            "balance); "
            "`overrun` charges usage above a hold, `waive` records usage above it that was not charged; "
            "`refund` returns charged credits; `adjust` is a correction by support."
        ),
    )
    amount = serializers.IntegerField(help_text="Size of the entry (positive); the signed effects follow.")
    balance_change = serializers.IntegerField(source="balance_delta")
    held_change = serializers.IntegerField(source="held_delta")
    balance = serializers.IntegerField(source="balance_after", help_text="Balance right after this entry.")
    held = serializers.IntegerField(source="held_after", help_text="Held right after this entry.")
    available = serializers.IntegerField(source="available_after", help_text="Available right after this entry.")
    reference = serializers.SerializerMethodField(
        help_text=(
            "What the entry belongs to: a task id (`task_…`), a chat turn's message id (`msg_…`), or a support "
            "action's reference. `GET /credits/ledger?reference=` takes it back."
        )
    )
    hold_id = serializers.SerializerMethodField(help_text="`hold_…` of the reservation this entry belongs to.")
    actor = serializers.SerializerMethodField(
        help_text="What caused it: the API key's id (`key_…`), `user` (the Studio), `system` or null."
    )
    description = serializers.CharField(help_text="A note, e.g. the reason support gave.")
    created_at = serializers.DateTimeField()

    def get_reference(self, entry: Any) -> str:
        return public_reference(entry.reference)

    def get_hold_id(self, entry: Any) -> str | None:
        return entry.hold.public_id if entry.hold_id else None

    def get_actor(self, entry: Any) -> str | None:
        return public_actor(entry.actor)
