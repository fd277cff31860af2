"""Views of the credits resource: thin reads over ``rivya_billing`` selectors.

    /api/v1/credits          GET  the wallet: balance, held, available, unit, recent activity
    /api/v1/credits/ledger   GET  the ledger, newest first (filters: type, reference)
    /api/v1/credits/alerts   GET, PATCH  the low-balance alert (``credits.low`` events)

All act on the request's account only.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from rivya_api.common.pagination import page_response
from rivya_api.common.parsers import JSONParser
from rivya_api.common.schema import (
    PAGINATION_PARAMETERS,
    ErrorExample,
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.views import AccountScopedMixin
from rivya_api.conf import api_settings
from rivya_api.credits.references import ledger_references
from rivya_api.credits.serializers import (
    ENTRY_TYPES,
    CreditsAlertsOutputSerializer,
    CreditsAlertsUpdateInputSerializer,
    CreditsOutputSerializer,
    LedgerEntryOutputSerializer,
    LedgerFilterSerializer,
    credits_output,
)
from rivya_billing.conf import billing_settings
from rivya_billing.selectors import wallet_activity, wallet_entries, wallet_expiring, wallet_get
from rivya_billing.services import credits_alert_set

TAG = "Credits"

_CREDITS_EXAMPLE = {
    "object": "credits",
    "balance": 960,
    "held": 40,
    "available": 920,
    "unit": "credits",
    "updated_at": "2026-05-01T09:31:00.000000Z",
    "activity": {
        "since": "2026-04-01T09:32:00.000000Z",
        "days": 30,
        "granted": 1000,
        "reserved": 120,
        "charged": 53,
        "released": 37,
        "refunded": 10,
        "adjusted": 0,
        "expired": 0,
    },
    "expiring": [{"credits": 250, "expires_at": "2026-06-01T00:00:00.000000Z"}],
}
_ENTRY_EXAMPLES = [
    {
        "id": "le_8KqT3vN0xZc2LmR7sD4hW1pY",
        "object": "ledger_entry",
        "sequence": 4,
        "type": "release",
        "amount": 37,
        "balance_change": 0,
        "held_change": -37,
        "balance": 987,
        "held": 0,
        "available": 987,
        "reference": "msg_5Tn2qW8xKc0VbL3zR9sD7hYe",
        "hold_id": "hold_2mXc9Lq4Tz7NvB1kR0sW5dHe",
        "actor": "key_3Jw9Kx0Lm2Nq",
        "description": "",
        "created_at": "2026-05-01T09:31:00.000000Z",
    },
    {
        "id": "le_1ZpR6wK9nTc4XbL0vQ3sH8mD",
        "object": "ledger_entry",
        "sequence": 3,
        "type": "settle",
        "amount": 13,
        "balance_change": -13,
        "held_change": -13,
        "balance": 987,
        "held": 37,
        "available": 950,
        "reference": "msg_5Tn2qW8xKc0VbL3zR9sD7hYe",
        "hold_id": "hold_2mXc9Lq4Tz7NvB1kR0sW5dHe",
        "actor": "key_3Jw9Kx0Lm2Nq",
        "description": "",
        "created_at": "2026-05-01T09:31:00.000000Z",
    },
]


_ALERTS_EXAMPLE = {
    "object": "credits_alerts",
    "low_balance_threshold": 500,
    "low_balance_triggered": False,
    "available": 920,
}
_ALERTS_DESCRIPTION = (
    "When the account's `available` credits fall below `low_balance_threshold`, one `credits.low` webhook "
    "event is published (`data`: `available` right after the change that crossed, and `threshold`), "
    "signed and delivered like every event to the endpoints subscribed to it. It fires once per "
    "crossing, however many requests spend concurrently, and re-arms when `available` rises to the "
    "threshold or above (a grant, a released hold)."
)


def _alerts_body(wallet: Any) -> dict[str, Any]:
    return {
        "low_balance_threshold": wallet.low_balance_threshold,
        "low_balance_triggered": wallet.low_balance_threshold is not None and not wallet.low_balance_armed,
        "available": wallet.available,
    }


_LEDGER_PAGE_EXAMPLE = {
    "object": "list",
    "data": _ENTRY_EXAMPLES,
    "has_more": True,
    "next_cursor": _ENTRY_EXAMPLES[-1]["id"],
}
_LEDGER_DESCRIPTION = (
    "Every change of the wallet, newest first: reconcile each charge with the task or chat turn it "
    "belongs to (`reference`) and the API key that caused it (`actor`). A piece of work shows "
    "`reserve` when accepted, then `settle` (and `release` of what it did not use) when it completes, "
    "or `release`/`expire` when it fails. "
    "Each entry carries the balance and held credits right after it."
)
_LEDGER_PARAMETERS = [
    *PAGINATION_PARAMETERS,
    OpenApiParameter("type", OpenApiTypes.STR, enum=ENTRY_TYPES, description="Only entries of this type."),
    OpenApiParameter(
        "reference",
        OpenApiTypes.STR,
        description=(
            "Only the entries of one piece of work, refunds of it included: a task id (`task_…`), a chat "
            "message id (`msg_…`, any message of the turn), a chat session id (`chat_…`, every turn of "
            "it), or an action's reference as the entries show it."
        ),
    ),
]
_LEDGER_ERRORS = error_responses(
    400,
    codes={
        400: [
            ErrorExample(
                "invalid_choice",
                '"spend" is not a valid choice; use one of: grant, reserve, settle, release, expire, '
                "overrun, waive, refund, adjust.",
                "type",
            ),
            ErrorExample("invalid_request", "after does not name an object in this list.", "after"),
        ]
    },
)


# Totals are cached under the wallet's last sequence number: any new entry changes the key, so
# a cached value is never stale by an entry, only (by at most the TTL) at the window's far edge.
# The expiring grants too: a grant's rest changes only with an entry (grant, a settle's draw, expire).
# Each process also keeps the totals it read or computed until the shared entry's own end (the
# value carries when it was computed), so a wallet read again within the TTL costs no cache round trip.
ACTIVITY_CACHE_SECONDS = 60
_LOCAL_TOTALS_MAX = 10_000
_local_totals: dict[str, tuple[float, tuple[dict[str, Any], list]]] = {}  # key -> (computed at, totals)


def _activity_and_expiring(account: Any, wallet: Any, *, since: Any, days: int) -> tuple[dict[str, Any], list]:
    """``wallet_activity`` for the window and ``wallet_expiring``, from the cache while the wallet has no new entry."""
    if not wallet.pk:
        return wallet_activity(account=account, since=since), []
    # updated_at too: a key must not outlive its wallet (ids reused after a restore or in tests).
    key = f"rivya:credits:totals:v2:{wallet.pk}:{wallet.last_sequence}:{wallet.updated_at.timestamp()}:{days}"
    now = time.time()
    local = _local_totals.get(key)
    if local is not None and 0 <= now - local[0] < ACTIVITY_CACHE_SECONDS:
        return local[1]
    cached = cache.get(key)
    if cached is None or not 0 <= now - cached[0] < ACTIVITY_CACHE_SECONDS:
        cached = (now, (wallet_activity(account=account, since=since), wallet_expiring(account=account)))
        cache.set(key, cached, ACTIVITY_CACHE_SECONDS)
    if len(_local_totals) >= _LOCAL_TOTALS_MAX:
        _local_totals.clear()
    _local_totals[key] = cached
    return cached[1]


class CreditsViewSet(AccountScopedMixin, viewsets.ViewSet):
    """The request's account's wallet and ledger (read-only: credits change through the work they pay for),
    and its low-balance alert (the one setting of the wallet a key may change)."""

    parser_classes = [JSONParser]

    required_scopes = {
        "retrieve": "credits:read",
        "ledger": "credits:read",
        "alerts": "credits:read",
        "alerts_update": "credits:write",
    }  # rivya_api.keys.scopes

    @extend_schema(
        operation_id="getCredits",
        summary="Get the credit balance",
        description=(
            "The account's one wallet, shared by the API and the Studio. Accepted work holds its price "
            "(`held`) until it completes and is charged, or fails and is released; `available` is what new "
            "work can reserve, and a request that needs more gets 402 `insufficient_credits`. `activity` "
            "sums the ledger over a recent window: the last `activity.days` days, since `activity.since`. "
            "`expiring` lists grants that expire: spending draws the soonest first, and what is left of one at "
            "its `expires_at` (never credits held by work in progress) leaves as an `expire` ledger entry "
            "without `hold_id`."
        ),
        tags=[TAG],
        responses={200: CreditsOutputSerializer},
        examples=[OpenApiExample("credits", value=_CREDITS_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def retrieve(self, request: Request) -> Response:
        wallet = wallet_get(account=self.account)
        days = billing_settings.ACTIVITY_WINDOW_DAYS
        since = timezone.now() - timedelta(days=days)
        activity, expiring = _activity_and_expiring(self.account, wallet, since=since, days=days)
        activity = {**activity, "since": since}
        body: dict[str, Any] = {
            "balance": wallet.balance,
            "held": wallet.held,
            "available": wallet.available,
            "unit": billing_settings.UNIT,
            "updated_at": wallet.updated_at if wallet.pk else None,
            "activity": {**activity, "days": days},
            "expiring": expiring,
        }
        if api_settings.CREDITS_BODY_PLAIN:
            return Response(credits_output(body))
        return Response(CreditsOutputSerializer(body).data)

    @extend_schema(
        operation_id="listLedgerEntries",
        summary="List ledger entries",
        description=_LEDGER_DESCRIPTION,
        tags=[TAG],
        parameters=_LEDGER_PARAMETERS,
        responses={200: list_of(LedgerEntryOutputSerializer), **_LEDGER_ERRORS},
        examples=[OpenApiExample("ledger", value=_LEDGER_PAGE_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def ledger(self, request: Request) -> Response:
        filters = LedgerFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = dict(filters.validated_data)
        if "reference" in values:
            values["work"] = ledger_references(account=self.account, reference=values.pop("reference"))
        entries = wallet_entries(account=self.account, **values)
        # The ledger's own order: sequence numbers, unique per wallet.
        return page_response(
            request, entries, lambda page: LedgerEntryOutputSerializer(page, many=True).data, order=("sequence",)
        )

    @extend_schema(
        operation_id="getCreditAlerts",
        summary="Get the low-balance alert",
        description=_ALERTS_DESCRIPTION,
        tags=[TAG],
        responses={200: CreditsAlertsOutputSerializer},
        examples=[OpenApiExample("alerts", value=_ALERTS_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def alerts(self, request: Request) -> Response:
        return Response(CreditsAlertsOutputSerializer(_alerts_body(wallet_get(account=self.account))).data)

    @extend_schema(
        operation_id="updateCreditAlerts",
        summary="Set the low-balance alert",
        description=(
            _ALERTS_DESCRIPTION + " Setting a new threshold arms it: if `available` is already below it, "
            "`credits.low` is published right away. Setting the threshold it already has changes nothing; "
            "null turns the alert off."
        ),
        tags=[TAG],
        request=CreditsAlertsUpdateInputSerializer,
        responses={
            200: CreditsAlertsOutputSerializer,
            **error_responses(
                400,
                codes={
                    400: [
                        ErrorExample(
                            "min_value", "Ensure this value is greater than or equal to 1.", "low_balance_threshold"
                        ),
                        ErrorExample("invalid_type", "Expected an integer, got a string.", "low_balance_threshold"),
                        ErrorExample(
                            "max_value",
                            "Ensure this value is less than or equal to 4611686018427387904.",
                            "low_balance_threshold",
                        ),
                    ]
                },
            ),
        },
        examples=[
            OpenApiExample("set", value={"low_balance_threshold": 500}, request_only=True),
            OpenApiExample("turn off", value={"low_balance_threshold": None}, request_only=True),
            OpenApiExample("alerts", value=_ALERTS_EXAMPLE, response_only=True, status_codes=["200"]),
        ],
    )
    def alerts_update(self, request: Request) -> Response:
        data = CreditsAlertsUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "low_balance_threshold" in data.validated_data:
            wallet = credits_alert_set(account=self.account, **data.validated_data)
        else:  # a PATCH without the field changes nothing
            wallet = wallet_get(account=self.account)
        return Response(CreditsAlertsOutputSerializer(_alerts_body(wallet)).data)
