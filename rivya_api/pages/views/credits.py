"""Credits and usage page: balance, held and available; the low-balance alert; spend per day and kind;
the ledger; CSV export."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from rivya_api.common.dates import iso
from rivya_api.common.rendering import render
from rivya_api.common.streaming import serve_streaming
from rivya_api.credits.references import public_reference
from rivya_api.credits.serializers import MAX_THRESHOLD, public_actor
from rivya_api.pages.charts import KIND_COLOURS, daily_stacked_bars
from rivya_api.pages.common import page_account, paginate, query_without_page
from rivya_api.pages.ledger import daily_spend, ledger_entries, work_reference, works_for
from rivya_billing.models import EntryType
from rivya_billing.selectors import wallet_expiring, wallet_get
from rivya_billing.services import credits_alert_set

PER_PAGE = 25
CHART_DAYS = 30
CSV_COLUMNS = [
    "id",
    "created_at",
    "type",
    "amount",
    "balance_change",
    "held_change",
    "balance_after",
    "held_after",
    "available_after",
    "reference",
    "work",
    "kind",
    "actor",
    "description",
]


class LedgerFilterForm(forms.Form):
    type = forms.ChoiceField(choices=[("", "Any"), *EntryType.choices], required=False)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    reference = forms.CharField(required=False, max_length=255, label="Task, turn or reference")

    def filters(self) -> dict[str, Any]:
        if not self.is_valid():
            return {}
        return {key: value for key, value in self.cleaned_data.items() if value not in (None, "")}


class LowBalanceAlertForm(forms.Form):
    low_balance_threshold = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_THRESHOLD,
        label="Alert when available falls below",
        help_text="Credits. Empty turns the alert off.",
    )


def _entries(request: HttpRequest, account: Any) -> tuple[LedgerFilterForm, Any]:
    form = LedgerFilterForm(request.GET or None)
    return form, ledger_entries(account=account, **form.filters())


@login_required
@require_http_methods(["GET"])
def credits_index(request: HttpRequest) -> HttpResponse:
    return _credits_page(request)


def _credits_page(request: HttpRequest, alert_form: LowBalanceAlertForm | None = None) -> HttpResponse:
    account = page_account(request)
    form, entries = _entries(request, account)
    page = paginate(request, entries, PER_PAGE)
    works = works_for(account=account, references=[work_reference(entry) for entry in page.object_list])
    days, series = daily_spend(account=account, days=CHART_DAYS)
    spent = sum(sum(s.values) for s in series)
    wallet = wallet_get(account=account)
    context = {
        "section": "credits",
        "wallet": wallet,
        "alert_form": alert_form
        or LowBalanceAlertForm(initial={"low_balance_threshold": wallet.low_balance_threshold}),
        "alert_triggered": wallet.low_balance_threshold is not None and not wallet.low_balance_armed,
        "expiring": wallet_expiring(account=account) if wallet.pk else [],
        "now": timezone.now(),
        "form": form,
        "entries": page,
        "works": works,
        "chart": daily_stacked_bars(days=days, series=series, title=f"Credits spent per day, last {CHART_DAYS} days"),
        "series": series,
        "days": days,
        "chart_rows": [(day, [s.values[i] for s in series]) for i, day in enumerate(days)],
        "spent": spent,
        "spent_by_kind": [(s.kind, sum(s.values), s.colour) for s in series],
        "kind_colours": KIND_COLOURS,
        "query": query_without_page(request),
    }
    return render(request, "rivya_api/pages/credits/index.html", context, status=400 if alert_form else 200)


@login_required
@require_http_methods(["POST"])
def credits_alert_update(request: HttpRequest) -> HttpResponse:
    """Set or clear the low-balance threshold (``credits_alert_set``), then back to the credits page."""
    form = LowBalanceAlertForm(request.POST)
    if not form.is_valid():
        return _credits_page(request, alert_form=form)
    threshold = form.cleaned_data["low_balance_threshold"]
    credits_alert_set(account=page_account(request), low_balance_threshold=threshold)
    messages.success(request, f"Alert set below {threshold} credits." if threshold else "Alert turned off.")
    return HttpResponseRedirect(reverse("rivya_pages:credits"))


@login_required
@require_http_methods(["GET"])
def wallet_summary(request: HttpRequest) -> JsonResponse:
    """The wallet's numbers, for pages that refresh them after a task is charged or released."""
    wallet = wallet_get(account=page_account(request))
    response = JsonResponse({"balance": wallet.balance, "held": wallet.held, "available": wallet.available})
    response["Cache-Control"] = "no-store"
    return response


class _Echo:
    """A file-like object whose ``write`` returns the line, so ``csv.writer`` can feed a stream."""

    def write(self, value: str) -> str:
        return value


def _csv_rows(account: Any, entries: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    batch: list[Any] = []

    def flush() -> Iterator[str]:
        works = works_for(account=account, references=[work_reference(entry) for entry in batch])
        for entry in batch:
            work = works.get(work_reference(entry))
            yield writer.writerow(
                [
                    entry.public_id,
                    iso(entry.created_at),
                    entry.type,
                    entry.amount,
                    entry.balance_delta,
                    entry.held_delta,
                    entry.balance_after,
                    entry.held_after,
                    entry.available_after,
                    public_reference(entry.reference),
                    public_reference(work_reference(entry)) if work else "",
                    work.kind if work else "",
                    public_actor(entry.actor) or "",
                    entry.description,
                ]
            )
        batch.clear()

    for entry in entries.iterator(chunk_size=500):
        batch.append(entry)
        if len(batch) >= 500:
            yield from flush()
    yield from flush()


@login_required
@require_http_methods(["GET"])
def credits_export(request: HttpRequest) -> StreamingHttpResponse:
    """The ledger (with the page's filters) as CSV, streamed, so a long ledger never sits in memory."""
    account = page_account(request)
    _, entries = _entries(request, account)
    response = StreamingHttpResponse(_csv_rows(account, entries), content_type="text/csv; charset=utf-8")
    stamp = date.isoformat(timezone.now().date())
    response["Content-Disposition"] = f'attachment; filename="rivya-ledger-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return serve_streaming(request, response)
