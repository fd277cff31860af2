"""Webhooks page: endpoints (create, edit, enable/disable, rotate secret, test) and their delivery logs.

Every write calls ``rivya_webhooks.services``; endpoint secrets are shown once,
in the response that created or rotated them (``no-store``), and never again.
The delivery log reads the account's events through the webhooks selectors,
so another account's endpoint or event is a 404 here as in the API.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from rivya_api.common.rendering import render
from rivya_api.pages.common import page_account, paginate
from rivya_api.pages.forms import WebhookEndpointForm
from rivya_webhooks.exceptions import RivyaWebhooksError
from rivya_webhooks.registry import event_types
from rivya_webhooks.selectors import webhook_endpoint_get, webhook_endpoint_list, webhook_event_get, webhook_event_list
from rivya_webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_test,
    webhook_endpoint_update,
    webhook_event_redeliver,
)

EVENTS_PER_PAGE = 20


def _type_choices() -> list[tuple[str, str]]:
    return [(item.name, item.name) for item in event_types()]


def _endpoint_or_404(request: HttpRequest, endpoint_id: str) -> Any:
    try:
        return webhook_endpoint_get(account=page_account(request), public_id=endpoint_id)
    except ObjectDoesNotExist:
        raise Http404("No such webhook endpoint.") from None


def _form_error(form: WebhookEndpointForm, exc: RivyaWebhooksError) -> None:
    param = getattr(exc, "param", None)
    form.add_error(param if param in form.fields else None, str(exc))


def _secret_once(request: HttpRequest, *, endpoint: Any, secret: str, rotated: bool) -> HttpResponse:
    context = {"section": "webhooks", "endpoint": endpoint, "secret": secret, "rotated": rotated}
    response = render(request, "rivya_api/pages/webhooks/secret.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def webhook_index(request: HttpRequest) -> HttpResponse:
    account = page_account(request)
    form = WebhookEndpointForm(request.POST or None, event_types=_type_choices())
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhook_endpoint_create(
                account=account,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
            )
        except RivyaWebhooksError as exc:
            _form_error(form, exc)
        else:
            return _secret_once(request, endpoint=endpoint, secret=secret, rotated=False)
    context = {"section": "webhooks", "form": form, "endpoints": webhook_endpoint_list(account=account)}
    return render(request, "rivya_api/pages/webhooks/list.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """The endpoint, its settings form (POST saves it) and its delivery log with every attempt."""
    account = page_account(request)
    endpoint = _endpoint_or_404(request, endpoint_id)
    initial = {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types}
    form = WebhookEndpointForm(request.POST or None, initial=initial, event_types=_type_choices())
    if request.method == "POST" and form.is_valid():
        try:
            webhook_endpoint_update(
                endpoint=endpoint,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
            )
        except RivyaWebhooksError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Saved.")
            return redirect("rivya_pages:webhook-detail", endpoint.public_id)
    events = webhook_event_list(account=account).filter(deliveries__endpoint=endpoint)
    page = paginate(request, events, EVENTS_PER_PAGE)
    log = []
    for event in page.object_list:
        delivery = next((d for d in event.deliveries.all() if d.endpoint_id == endpoint.pk), None)
        log.append((event, delivery))
    context = {"section": "webhooks", "endpoint": endpoint, "form": form, "events": page, "log": log, "query": ""}
    return render(request, "rivya_api/pages/webhooks/detail.html", context, status=400 if form.errors else 200)


def _back(endpoint: Any) -> HttpResponse:
    return redirect("rivya_pages:webhook-detail", endpoint.public_id)


@login_required
@require_http_methods(["POST"])
def webhook_enable(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    enabled = request.POST.get("enabled") == "true"
    webhook_endpoint_update(endpoint=endpoint, enabled=enabled)
    messages.success(request, "Enabled: pending deliveries resume." if enabled else "Disabled: deliveries wait.")
    return _back(endpoint)


@login_required
@require_http_methods(["POST"])
def webhook_rotate_secret(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint, secret = webhook_endpoint_rotate_secret(endpoint=_endpoint_or_404(request, endpoint_id))
    return _secret_once(request, endpoint=endpoint, secret=secret, rotated=True)


@login_required
@require_http_methods(["POST"])
def webhook_test(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    try:
        event = webhook_endpoint_test(endpoint=endpoint)
    except RivyaWebhooksError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Sent test event {event.public_id}; its attempts appear below.")
    return _back(endpoint)


@login_required
@require_http_methods(["POST"])
def webhook_redeliver(request: HttpRequest, endpoint_id: str, event_id: str) -> HttpResponse:
    account = page_account(request)
    endpoint = _endpoint_or_404(request, endpoint_id)
    try:
        event = webhook_event_get(account=account, public_id=event_id)
    except ObjectDoesNotExist:
        raise Http404("No such event.") from None
    try:
        webhook_event_redeliver(event=event, endpoint=endpoint)
    except RivyaWebhooksError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Redelivering {event.public_id} now.")
    return _back(endpoint)


@login_required
@require_http_methods(["GET", "POST"])
def webhook_delete(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    if request.method == "POST":
        webhook_endpoint_delete(endpoint=endpoint)
        messages.success(request, f"Deleted the endpoint {endpoint.url}.")
        return redirect("rivya_pages:webhooks")
    return render(request, "rivya_api/pages/webhooks/delete.html", {"section": "webhooks", "endpoint": endpoint})
