"""What the pages make of the credit ledger: which work an entry belongs to, and spend per day and kind.

Billing knows accounts, amounts and references, nothing of tasks or chats. The
references are what ties an entry to its work: a generation's hold is
referenced by its task id (``task_…``), a chat turn's by ``chat_turn:<turn>``;
settle, release, expire and refund lines carry their hold, so their work is the
hold's reference. Everything here reads through the billing, generation and chat selectors.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from rivya_api.chat.selectors import chat_turn_sessions
from rivya_api.credits.references import CHAT_TURN_PREFIX, ledger_references
from rivya_api.generations.selectors import generation_list
from rivya_api.pages.charts import KIND_COLOURS, Series
from rivya_billing.selectors import wallet_entries

TASK_PREFIX = "task_"
# Public ids a client may filter the ledger by (see rivya_api.credits.references).
PUBLIC_ID_PREFIXES = (TASK_PREFIX, "msg_", "chat_")
# Entry types that take credits from the balance for work, and the one that gives some back.
SPEND_TYPES = ("settle", "overrun")
REFUND_TYPE = "refund"


@dataclass(frozen=True)
class Work:
    """The task or chat turn an entry belongs to, and where the pages show it."""

    kind: str  # image, video, audio, chat
    label: str
    url: str | None


def work_reference(entry: Any) -> str:
    """The reference of the work behind ``entry``: its hold's for hold lines, else its own."""
    hold = getattr(entry, "hold", None)
    return hold.reference if hold is not None else entry.reference


def works_for(*, account: Any, references: Iterable[str]) -> dict[str, Work]:
    """The work behind each of ``references`` that is a task or a chat turn of ``account``."""
    references = set(references)
    task_ids = [ref for ref in references if ref.startswith(TASK_PREFIX)]
    turns = [ref.removeprefix(CHAT_TURN_PREFIX) for ref in references if ref.startswith(CHAT_TURN_PREFIX)]
    found: dict[str, Work] = {}
    if task_ids:
        for public_id, kind in (
            generation_list(account=account).filter(public_id__in=task_ids).values_list("public_id", "kind")
        ):
            found[public_id] = Work(kind, public_id, reverse("rivya_pages:generation-detail", args=[public_id]))
    if turns:
        sessions = chat_turn_sessions(account=account, turn_ids=turns)
        for turn in turns:
            session = sessions.get(turn)
            url = reverse("rivya_pages:chat-detail", args=[session]) + f"#turn-{turn}" if session else None
            found[CHAT_TURN_PREFIX + turn] = Work("chat", f"chat turn {turn}", url)
    return found


def task_ledger_entries(*, account: Any, task: Any) -> QuerySet:
    """The ledger lines of one generation (its reserve and what resolved it)."""
    return wallet_entries(account=account).filter(hold__reference=task.public_id)


def ledger_entries(
    *,
    account: Any,
    type: str | None = None,
    since: date | None = None,
    until: date | None = None,
    reference: str | None = None,
) -> QuerySet:
    """The account's ledger, newest first, filtered as the credits page and its CSV export allow.

    ``reference`` given as a public id (``task_…``, ``msg_…``, ``chat_…``) selects that work's
    entries exactly, as the API's filter does; any other text matches part of a reference.
    """
    entries = wallet_entries(account=account, type=type or None)
    if since:
        entries = entries.filter(created_at__date__gte=since)
    if until:
        entries = entries.filter(created_at__date__lte=until)
    reference = (reference or "").strip()
    if reference.startswith(PUBLIC_ID_PREFIXES) and not reference.startswith(CHAT_TURN_PREFIX):
        references = ledger_references(account=account, reference=reference)
        entries = entries.filter(Q(reference__in=references) | Q(hold__reference__in=references))
    elif reference:
        entries = entries.filter(Q(reference__icontains=reference) | Q(hold__reference__icontains=reference))
    return entries


def daily_spend(*, account: Any, days: int = 30, now: datetime | None = None) -> tuple[list[date], list[Series]]:
    """Credits spent per day (UTC) and kind over the last ``days`` days, today included.

    Spent is what work was charged (settle and overrun lines) less what was
    refunded of it, by the day the line was posted.
    """
    today = timezone.localdate(now or timezone.now(), timezone=timezone.get_fixed_timezone(0))
    first = today - timedelta(days=days - 1)
    rows = (
        wallet_entries(account=account, type=[*SPEND_TYPES, REFUND_TYPE])
        .filter(created_at__date__gte=first)
        .annotate(day=TruncDate("created_at"))
        .values("day", "hold__reference", "type")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    rows = list(rows)
    works = works_for(account=account, references={row["hold__reference"] for row in rows if row["hold__reference"]})
    calendar = [first + timedelta(days=offset) for offset in range(days)]
    index = {day: position for position, day in enumerate(calendar)}
    totals: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    for row in rows:
        work = works.get(row["hold__reference"] or "")
        day = row["day"].date() if isinstance(row["day"], datetime) else row["day"]
        if work is None or day not in index:
            continue
        sign = -1 if row["type"] == REFUND_TYPE else 1
        totals[work.kind][index[day]] += sign * int(row["total"])
    series = [Series(kind, [max(0, value) for value in totals.get(kind, [0] * days)]) for kind in KIND_COLOURS]
    return calendar, series
