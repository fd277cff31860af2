"""Studio: a logged-in user submits a generation from a page, on the same wallet as the account's API keys.

No API key is involved: the view calls ``generation_create`` — the same service
the API calls — with ``source="studio"`` and ``submitted_by="user:<pk>"``. So
the job is priced and reserved on the account's one wallet, appears in the same
task list, and fires the same webhooks as one submitted with a key.

The form draws a field for each of the chosen model's parameters from its JSON
Schema. The price is shown before submitting: ``studio_price`` is the dry run
(``generation_quote``, what the API's ``dry_run: true`` answers), called by
``pages.js`` as the form changes, and the "Check price" button does the same
without JavaScript.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from rivya_api.catalog.selectors import catalog_models
from rivya_api.common.errors import ApiError
from rivya_api.common.rendering import render
from rivya_api.generations.selectors import generation_list
from rivya_api.generations.services import generation_create, generation_quote
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


def _quote(form: StudioGenerationForm, account: object) -> int | None:
    """The price of the form's generation (nothing is created); None with the error on the form."""
    try:
        return generation_quote(
            account=account, model_id=form.cleaned_data["model"], input=form.generation_input()
        ).price
    except (ApiError, RivyaError) as exc:
        form.add_error(form.field_for_param(getattr(exc, "param", None) or ""), _error_message(exc))
        return None


def _form(request: HttpRequest) -> tuple[StudioGenerationForm, list]:
    models = [model for model in catalog_models() if model.kind != "chat"]
    return StudioGenerationForm(request.POST or None, models=models), models


@login_required
@require_http_methods(["GET", "POST"])
def studio(request: HttpRequest) -> HttpResponse:
    account = page_account(request)
    form, models = _form(request)
    price = None
    if request.method == "POST" and form.is_valid():
        if request.POST.get("action") == "price":
            price = _quote(form, account)  # the "Check price" button: a dry run, nothing is created
        else:
            try:
                task = generation_create(
                    account=account,
                    model_id=form.cleaned_data["model"],
                    input=form.generation_input(),
                    source="studio",
                    submitted_by=f"user:{request.user.pk}",
                )
            except (ApiError, RivyaError) as exc:  # catalog, file and billing errors are RivyaErrors
                form.add_error(form.field_for_param(getattr(exc, "param", None) or ""), _error_message(exc))
            else:
                messages.success(request, f"Submitted {task.public_id}: {task.price} credits reserved.")
                return redirect("rivya_studio:index")
    wallet = wallet_get(account=account)
    context = {
        "section": "studio",
        "form": form,
        "models": models,
        "price": price,
        "wallet": wallet,
        "tasks": with_submitters(
            generation_list(account=account).order_by("-created_at", "-pk")[:RECENT_TASKS], account=account
        ),
    }
    return render(request, "rivya_api/pages/studio.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["POST"])
def studio_price(request: HttpRequest) -> JsonResponse:
    """The price of the Studio form as it stands (a dry run: nothing is reserved or created).

    ``{"object": "price", "model", "price", "available", "enough"}``, or 400 with
    ``{"error": {"code", "message", "param"}}`` naming the form field at fault.
    """
    account = page_account(request)
    form, _ = _form(request)
    price = _quote(form, account) if form.is_valid() else None
    if price is None:
        field, errors = next(iter(form.errors.items()))
        error = {"code": "invalid_request", "message": errors[0], "param": None if field == "__all__" else field}
        return JsonResponse({"error": error}, status=400)
    available = wallet_get(account=account).available
    return JsonResponse(
        {
            "object": "price",
            "model": form.cleaned_data["model"],
            "price": price,
            "available": available,
            "enough": price <= available,
        }
    )
