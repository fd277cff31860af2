"""Studio: a logged-in user submits a generation from a page, on the same wallet as the account's API keys.

No API key is involved: the view calls ``generation_create`` — the same service
the API calls — with ``source="studio"`` and ``submitted_by="user:<pk>"``. So
the job is priced and reserved on the account's one wallet, appears in the same
task list, and fires the same webhooks as one submitted with a key.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from rivya_api.catalog.selectors import catalog_models
from rivya_api.common.errors import ApiError
from rivya_api.common.rendering import render
from rivya_api.generations.selectors import generation_list
from rivya_api.generations.services import generation_create
from rivya_api.pages.common import page_account, with_submitters
from rivya_api.pages.forms import StudioGenerationForm
from rivya_billing.exceptions import InsufficientCreditsError
from rivya_billing.selectors import wallet_get
from rivya_core.exceptions import RivyaError

RECENT_TASKS = 10


def _error_message(exc: Exception) -> str:
    if isinstance(exc, InsufficientCreditsError):
        return f"Not enough credits: this generation needs {exc.requested}, and {exc.available} are available."
    if isinstance(exc, ApiError):
        return str(exc.detail)
    return str(exc)


@login_required
@require_http_methods(["GET", "POST"])
def studio(request: HttpRequest) -> HttpResponse:
    account = page_account(request)
    models = [model for model in catalog_models() if model.kind != "chat"]
    form = StudioGenerationForm(request.POST or None, models=models)
    if request.method == "POST" and form.is_valid():
        try:
            task = generation_create(
                account=account,
                model_id=form.cleaned_data["model"],
                input=form.generation_input(),
                source="studio",
                submitted_by=f"user:{request.user.pk}",
            )
        except (ApiError, RivyaError) as exc:  # catalog, file and billing errors are RivyaErrors
            param = getattr(exc, "param", None) or ""
            field = "prompt" if param == "input.prompt" else "model" if param == "model" else None
            if field is None and param.startswith("input"):
                field = "parameters"
            form.add_error(field, _error_message(exc))
        else:
            messages.success(request, f"Submitted {task.public_id}: {task.price} credits reserved.")
            return redirect("rivya_studio:index")
    context = {
        "section": "studio",
        "form": form,
        "models": models,
        "wallet": wallet_get(account=account),
        "tasks": with_submitters(
            generation_list(account=account).order_by("-created_at", "-pk")[:RECENT_TASKS], account=account
        ),
    }
    return render(request, "rivya_api/pages/studio.html", context, status=400 if form.errors else 200)
