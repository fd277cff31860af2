"""Chat session page: one session's messages, each turn anchored so ledger entries can link to it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods

from rivya_api.chat.selectors import chat_session_get
from rivya_api.common.rendering import render
from rivya_api.pages.common import page_account


@login_required
@require_http_methods(["GET"])
def chat_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    session = chat_session_get(account=page_account(request), session_id=session_id)
    if session is None:
        raise Http404("No such chat session.")
    return render(request, "rivya_api/pages/chat/detail.html", {"section": "credits", "session": session})
