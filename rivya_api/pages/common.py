"""What every settings page shares: the account of the logged-in user, the client address, paging."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest

from rivya_api.accounts import account_for_user

# How the settings pages name themselves in audit trails and ledger actors.
SOURCE = "settings"


def page_account(request: HttpRequest) -> Any:
    """The account the logged-in user acts as (the host's ``ACCOUNT_FOR_USER`` hook decides)."""
    cached = getattr(request, "_rivya_page_account", None)
    if cached is None:
        cached = account_for_user(request.user)
        request._rivya_page_account = cached  # type: ignore[attr-defined]
    return cached


def client_ip(request: HttpRequest) -> str | None:
    """The peer address. Behind a proxy, set REMOTE_ADDR from the proxy's header in middleware."""
    return request.META.get("REMOTE_ADDR") or None


def actor_label(request: HttpRequest) -> str:
    """Who did it, as the ledger and webhooks record it: ``user:<pk>``."""
    return f"user:{request.user.pk}"


def paginate(request: HttpRequest, queryset: Any, per_page: int = 25) -> Page:
    """One page of ``queryset`` from ``?page=``; an out-of-range or bad number gives the nearest page."""
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def query_without_page(request: HttpRequest) -> str:
    """The current filters as a query string, for the pager's links."""
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def with_submitters(tasks: Any, *, account: Any) -> list[Any]:
    """``tasks`` as a list, each with ``submitter_key``: the API key that submitted it (or None).

    The pages show a key by its name and prefix, never its raw id; one query for all the rows.
    """
    from rivya_api.keys.models import APIKey

    tasks = list(tasks)
    ids = {task.submitted_by for task in tasks if task.submitted_by.startswith("key_")}
    keys = {key.public_id: key for key in APIKey.objects.filter(account=account, public_id__in=ids)} if ids else {}
    for task in tasks:
        task.submitter_key = keys.get(task.submitted_by)
    return tasks


KEY_DETAIL_FIELDS = ("replaced_by", "replaces", "revoked_with")


def with_detail_keys(events: Any, *, account: Any) -> list[Any]:
    """``events`` (key audit events) as a list, each with ``detail_key``: the other key its details
    name (the one it was replaced by, replaces or was revoked with), so the page shows that key by
    its prefix and links it instead of printing its raw id; one query for all the rows."""
    from rivya_api.keys.models import APIKey

    events = list(events)
    ids = {(event.details or {}).get(field) for event in events for field in KEY_DETAIL_FIELDS} - {None}
    keys = {key.public_id: key for key in APIKey.objects.filter(account=account, public_id__in=ids)} if ids else {}
    for event in events:
        details = event.details or {}
        event.detail_key = next((keys[details[f]] for f in KEY_DETAIL_FIELDS if details.get(f) in keys), None)
    return events
