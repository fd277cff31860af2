"""API keys page: list, create (secret shown once), roll with a grace period, revoke, audit trail.

Every write goes through ``rivya_api.keys.services``, so the page leaves the same
audit trail (who, when, what, from which IP) as admin and the commands. A new
secret is rendered into the response that created it, never redirected to,
stored in the session or sent in a message cookie; that response is marked
``no-store`` so the browser does not keep it either.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from rivya_api.common.rendering import render
from rivya_api.keys.exceptions import APIKeyError
from rivya_api.keys.models import APIKey
from rivya_api.keys.selectors import (
    api_key_credit_limits,
    api_key_event_list,
    api_key_event_list_for_account,
    api_key_get,
    api_key_list,
    api_key_predecessors_working,
)
from rivya_api.keys.services import api_key_create, api_key_revoke, api_key_roll, api_key_update
from rivya_api.pages.common import (
    SOURCE,
    client_ip,
    page_account,
    paginate,
    query_without_page,
    with_detail_keys,
)
from rivya_api.pages.forms import APIKeyCreateForm, APIKeyLimitForm, APIKeyRollForm

ACTIVITY_PER_PAGE = 20


def _key_or_404(request: HttpRequest, key_id: str) -> APIKey:
    key = api_key_get(account=page_account(request), public_id=key_id)
    if key is None:
        raise Http404("No such API key.")
    return key


def _secret_once(request: HttpRequest, *, key: APIKey, secret: str, replaced: APIKey | None = None) -> HttpResponse:
    response = render(
        request,
        "rivya_api/pages/keys/secret.html",
        {"section": "keys", "key": key, "secret": secret, "replaced": replaced},
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def key_list(request: HttpRequest) -> HttpResponse:
    """The account's keys and their activity; POST creates a key and shows its secret once."""
    account = page_account(request)
    form = APIKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        expires_in = form.expires_in()
        now = timezone.now()
        try:
            key, secret = api_key_create(
                account=account,
                name=form.cleaned_data["name"],
                created_by=request.user,
                expires_at=now + expires_in if expires_in else None,
                ip=client_ip(request),
                source=SOURCE,
                now=now,
                scopes=form.cleaned_data.get("scopes") or None,
                models=form.cleaned_data.get("models") or None,
                credit_limit=form.credit_limit_value(),
            )
        except APIKeyError as exc:
            form.add_error(None, str(exc))
        else:
            return _secret_once(request, key=key, secret=secret)
    now = timezone.now()
    listed = list(api_key_list(account=account))
    limits = api_key_credit_limits(listed, now=now)
    keys = [(key, key.status_at(now), limits.get(key.spend_limit_id)) for key in listed]
    activity = paginate(request, api_key_event_list_for_account(account=account), ACTIVITY_PER_PAGE)
    activity.object_list = with_detail_keys(activity.object_list, account=account)
    context: dict[str, Any] = {
        "section": "keys",
        "form": form,
        "keys": keys,
        "activity": activity,
        "query": query_without_page(request),
    }
    return render(request, "rivya_api/pages/keys/list.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def key_detail(request: HttpRequest, key_id: str) -> HttpResponse:
    """One key: its scopes, models, credit limit with what is used, audit trail; POST sets the limit."""
    key = _key_or_404(request, key_id)
    limit = api_key_credit_limits([key]).get(key.spend_limit_id) if key.spend_limit_id else None
    initial = {"credit_limit": limit["credits"], "credit_limit_window": limit["window"]} if limit else {}
    form = APIKeyLimitForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            api_key_update(
                api_key=key,
                credit_limit=form.credit_limit_value(),
                actor=request.user,
                ip=client_ip(request),
                source=SOURCE,
            )
        except APIKeyError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Credit limit saved.")
            return redirect("rivya_pages:key-detail", key_id=key.public_id)
    context = {
        "section": "keys",
        "key": key,
        "status": key.status,
        "limit": limit,
        "form": form,
        "events": with_detail_keys(api_key_event_list(api_key=key)[:100], account=page_account(request)),
    }
    return render(request, "rivya_api/pages/keys/detail.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def key_roll(request: HttpRequest, key_id: str) -> HttpResponse:
    """GET: choose the grace period. POST: issue the replacement and show its secret once."""
    key = _key_or_404(request, key_id)
    form = APIKeyRollForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            new, secret = api_key_roll(
                api_key=key, grace=form.grace_period(), actor=request.user, ip=client_ip(request), source=SOURCE
            )
        except APIKeyError as exc:
            form.add_error(None, str(exc))
        else:
            return _secret_once(request, key=new, secret=secret, replaced=key)
    context = {"section": "keys", "key": key, "form": form}
    return render(request, "rivya_api/pages/keys/roll.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    """GET: ask for confirmation (works without JavaScript). POST: revoke now, everywhere.

    A key that replaced others still in their grace period offers to revoke them too,
    checked by default: revoking a leaked key must not leave its older secret working.
    """
    key = _key_or_404(request, key_id)
    predecessors = api_key_predecessors_working(api_key=key)
    if request.method == "POST":
        with_predecessors = bool(predecessors) and request.POST.get("predecessors") == "revoke"
        revoked = ([] if key.revoked_at else [key]) + (predecessors if with_predecessors else [])
        api_key_revoke(
            api_key=key,
            actor=request.user,
            ip=client_ip(request),
            source=SOURCE,
            predecessors=with_predecessors,
        )
        if revoked:
            names = ", ".join(f"{k.name or k.public_id} ({k.masked})" for k in revoked)
            pronoun = "them" if len(revoked) > 1 else "it"
            messages.success(request, f"Revoked {names}. Requests with {pronoun} now fail.")
        if predecessors and not with_predecessors:
            messages.warning(
                request,
                "The key it replaced still works until its grace period ends: "
                + ", ".join(f"{k.masked} (until {k.expires_at:%Y-%m-%d %H:%M} UTC)" for k in predecessors),
            )
        return redirect("rivya_pages:keys")
    context = {"section": "keys", "key": key, "predecessors": predecessors}
    return render(request, "rivya_api/pages/keys/revoke.html", context)
