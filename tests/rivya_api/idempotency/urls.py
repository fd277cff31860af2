"""Test-only POST endpoints that inherit ``AccountScopedMixin`` and count their executions.

An execution is an ``auth.Group`` row named ``idem-exec:<account pk>:…``, written
by the handler itself, so a test (or a test against a live server process)
counts executions in the database. ``hold: true`` makes the handler write an
``idem-started:…`` row and wait while an ``idem-hold`` row exists, so a test can
keep a first attempt running (or kill its process) at a known point.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from django.contrib.auth.models import Group
from django.db import OperationalError
from django.urls import include, path
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from rivya_api import urls as api_urls
from rivya_api.common.errors import ApiError
from rivya_api.common.schema import extend_schema
from rivya_api.common.views import AccountScopedMixin

EXECUTED = "idem-exec:"
STARTED = "idem-started:"
HOLD = "idem-hold"


def executions(account: Any = None) -> int:
    prefix = EXECUTED if account is None else f"{EXECUTED}{account.pk}:"
    return Group.objects.filter(name__startswith=prefix).count()


def _execute(account: Any, label: str) -> Group:
    return Group.objects.create(name=f"{EXECUTED}{account.pk}:{label[:60]}:{uuid.uuid4().hex[:12]}")


class WidgetInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=40)
    tags = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    outcome = serializers.ChoiceField(
        choices=["created", "payment_required", "crash", "unavailable"], default="created"
    )
    hold = serializers.BooleanField(default=False)
    pause = serializers.FloatField(min_value=0, max_value=2, default=0)


def _created(name: str) -> serializers.Serializer:
    return inline_serializer(name, {"id": serializers.CharField(), "object": serializers.CharField()})


class WidgetsView(AccountScopedMixin, APIView):
    required_scopes = {"get": None, "post": None}  # any key
    """POST creates a widget (one execution); GET lists nothing but must ignore the header."""

    @extend_schema(responses={200: inline_serializer("WidgetList", {"object": serializers.CharField()})})
    def get(self, request: Any) -> Response:
        return Response({"object": "list", "data": [], "has_more": False, "next_cursor": None})

    @extend_schema(request=WidgetInputSerializer, responses={201: _created("Widget")})
    def post(self, request: Any) -> Response:
        serializer = WidgetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["hold"]:
            Group.objects.create(name=f"{STARTED}{uuid.uuid4().hex}")
            deadline = time.monotonic() + 30
            while Group.objects.filter(name=HOLD).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if data["pause"]:
            time.sleep(data["pause"])  # widen the window in which retries overlap
        widget = _execute(self.account, data["name"])
        if data["outcome"] == "payment_required":
            raise ApiError("The wallet cannot cover this.", code="insufficient_credits", status=402)
        if data["outcome"] == "crash":
            raise RuntimeError("crashed after the write")
        if data["outcome"] == "unavailable":
            raise OperationalError("the database went away mid-request")
        body = {"id": f"widget_{widget.pk}", "object": "widget", "name": data["name"], "tags": data["tags"]}
        return Response(body, status=201, headers={"Location": f"/api/v1/_test/widgets/widget_{widget.pk}"})


class UploadsView(AccountScopedMixin, APIView):
    required_scopes = {"get": None, "post": None}  # any key
    """Multipart POST: one execution per upload; answers the file's hash."""

    @extend_schema(
        request={"multipart/form-data": inline_serializer("UploadInput", {"file": serializers.FileField()})},
        responses={201: _created("Upload")},
    )
    def post(self, request: Any) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise ApiError("A file is required.", code="missing_parameter", param="file")
        digest = hashlib.sha256(upload.read()).hexdigest()
        upload_row = _execute(self.account, f"upload:{request.data.get('purpose', '')}")
        return Response({"id": f"upload_{upload_row.pk}", "object": "upload", "sha256": digest}, status=201)


class NotIdempotentView(AccountScopedMixin, APIView):
    required_scopes = {"get": None, "post": None}  # any key
    """Opted out: every POST executes, whatever its Idempotency-Key."""

    idempotency_enabled = False

    @extend_schema(request=None, responses={201: _created("Thing")})
    def post(self, request: Any) -> Response:
        row = _execute(self.account, "opted-out")
        return Response({"id": f"thing_{row.pk}", "object": "thing"}, status=201)


test_patterns = [
    path("_test/widgets", WidgetsView.as_view()),
    path("_test/uploads", UploadsView.as_view()),
    path("_test/not-idempotent", NotIdempotentView.as_view()),
]

urlpatterns = [
    path("api/v1/", include((test_patterns + api_urls.urlpatterns, "rivya_api"))),
    path("", include("config.urls")),
]
