"""Generations page: the account's tasks from the API and Studio alike, with live status and inline outputs.

The page renders the list server-side (it works without JavaScript); the live
part is ``rivya_api/static/rivya_api/pages.js`` listening on the WebSocket consumer, with
``generation_live`` as its polling fallback and ``generation_row`` rendering a
row for a task the page has not seen yet.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from rivya_api.common.rendering import render
from rivya_api.generations.exceptions import GenerationError
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.presenters import generation_payload
from rivya_api.generations.selectors import generation_list
from rivya_api.generations.services import generation_cancel
from rivya_api.pages.common import page_account, paginate, query_without_page, with_submitters
from rivya_api.pages.ledger import task_ledger_entries

PER_PAGE = 20
MAX_LIVE_IDS = 100


def _task_or_404(request: HttpRequest, task_id: str) -> GenerationTask:
    task = generation_list(account=page_account(request)).filter(public_id=task_id).first()
    if task is None:
        raise Http404("No such generation.")
    return with_submitters([task], account=page_account(request))[0]


@login_required
@require_http_methods(["GET"])
def generation_index(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    if status not in (None, *GenerationTask.Status.values):
        status = None
    tasks = generation_list(account=page_account(request), status=status).order_by("-created_at", "-pk")
    page = paginate(request, tasks, PER_PAGE)
    page.object_list = with_submitters(page.object_list, account=page_account(request))
    context = {
        "section": "generations",
        "tasks": page,
        "statuses": GenerationTask.Status.values,
        "status": status or "",
        "query": query_without_page(request),
    }
    return render(request, "rivya_api/pages/generations/list.html", context)


@login_required
@require_http_methods(["GET"])
def generation_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _task_or_404(request, task_id)
    context = {
        "section": "generations",
        "task": task,
        "entries": task_ledger_entries(account=page_account(request), task=task),
    }
    return render(request, "rivya_api/pages/generations/detail.html", context)


@login_required
@require_http_methods(["GET"])
def generation_row(request: HttpRequest, task_id: str) -> HttpResponse:
    """One task's table row, as the list renders it (the live script inserts it for new tasks)."""
    return render(request, "rivya_api/pages/generations/_row.html", {"task": _task_or_404(request, task_id)})


@login_required
@require_http_methods(["GET"])
def generation_live(request: HttpRequest) -> JsonResponse:
    """Polling fallback of the live updates: the current state of the listed tasks of this account."""
    ids = [value for value in request.GET.get("ids", "").split(",") if value][:MAX_LIVE_IDS]
    tasks = generation_list(account=page_account(request)).filter(public_id__in=ids)
    response = JsonResponse({"object": "list", "data": [generation_payload(task, request=request) for task in tasks]})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["POST"])
def generation_cancel_view(request: HttpRequest, task_id: str) -> HttpResponse:
    task = _task_or_404(request, task_id)
    try:
        generation_cancel(account=page_account(request), task_id=task.public_id)
    except GenerationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Asked {task.public_id} to stop; its credits are released when it does.")
    next_url = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(next_url)
    return redirect("rivya_pages:generations")
