"""HTTP for generations: submit, read, list, cancel, and ``Prefer: wait`` long-polls."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from rivya_api.common.errors import error_response
from rivya_api.common.pagination import CursorPagination
from rivya_api.common.views import AccountScopedMixin
from rivya_api.generations import selectors, services
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.presenters import generation_payload
from rivya_api.generations.serializers import (
    GenerationCreateInputSerializer,
    GenerationOutputSerializer,
    GenerationQuoteSerializer,
)

MAX_WAIT_SECONDS = 60
PREFER_WAIT = OpenApiParameter(
    name="Prefer",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="`wait=N` (N ≤ 60): hold the response until the task is terminal or N seconds pass.",
)


@extend_schema_view(
    create=extend_schema(
        summary="Create a generation",
        request=GenerationCreateInputSerializer,
        responses={202: GenerationOutputSerializer, 200: GenerationQuoteSerializer},
        parameters=[PREFER_WAIT],
    ),
    list=extend_schema(
        summary="List generations",
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in GenerationTask.Status]),
            OpenApiParameter("model", str),
        ],
        responses={200: GenerationOutputSerializer(many=True)},
    ),
    retrieve=extend_schema(
        summary="Get a generation", responses={200: GenerationOutputSerializer}, parameters=[PREFER_WAIT]
    ),
    cancel=extend_schema(summary="Cancel a generation", request=None, responses={200: GenerationOutputSerializer}),
)
class GenerationViewSet(AccountScopedMixin, viewsets.GenericViewSet):
    pagination_class = CursorPagination
    serializer_class = GenerationOutputSerializer
    lookup_url_kwarg = "task_id"

    def get_queryset(self) -> Any:
        return selectors.generation_list(
            account=self.account,
            status=self.request.query_params.get("status"),
            model=self.request.query_params.get("model"),
        )

    def create(self, request: Any) -> Response:
        data = GenerationCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        if params["dry_run"]:
            quote = services.generation_quote(account=self.account, model_id=params["model"], input=params["input"])
            body = {"object": "generation.quote", "model": quote.model.id, "price": quote.price, "input": quote.input}
            return Response(body, status=http.HTTP_200_OK)
        task = services.generation_create(
            account=self.account,
            model_id=params["model"],
            input=params["input"],
            metadata=params.get("metadata"),
            max_credits=params.get("max_credits"),
            submitted_by=self.request.user.api_key.public_id,
        )
        body = generation_payload(task, request=request)
        return Response(body, status=http.HTTP_202_ACCEPTED, headers={"Location": f"{request.path}/{task.public_id}"})

    def list(self, request: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([generation_payload(task, request=request) for task in page])

    def retrieve(self, request: Any, task_id: str) -> Response:
        task = services.generation_get(account=self.account, task_id=task_id)
        return Response(generation_payload(task, request=request))

    @action(detail=True, methods=["post"])
    def cancel(self, request: Any, task_id: str) -> Response:
        task = services.generation_cancel(account=self.account, task_id=task_id)
        return Response(generation_payload(task, request=request))


def prefer_wait(request: HttpRequest) -> int | None:
    """Seconds from ``Prefer: wait=N``; None when absent. Raises ValueError when over the limit."""
    match = re.search(r"(?:^|[;,\s])wait=(\d+)", request.headers.get("Prefer", ""))
    if not match:
        return None
    seconds = int(match.group(1))
    if seconds > MAX_WAIT_SECONDS:
        raise ValueError(seconds)
    return seconds


def waiting(view: Any) -> Any:
    """Wrap a DRF view so ``Prefer: wait=N`` long-polls on the event loop.

    The DRF view runs as usual (auth, throttles, validation, idempotency). If it
    answered with a non-terminal task, we poll its status with short queries and
    ``asyncio.sleep`` in between: no thread and no database connection is held
    while waiting.
    """

    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            wait = prefer_wait(request)
        except ValueError:
            return error_response(
                400, "invalid_prefer_wait", f"Prefer: wait is at most {MAX_WAIT_SECONDS} seconds.", param="Prefer"
            )
        response = await sync_to_async(view)(request, *args, **kwargs)
        if wait is None or response.status_code not in (200, 202) or "status" not in getattr(response, "data", {}):
            return response
        task = await _wait_terminal(response.data["id"], wait)
        if task is None:
            response["Preference-Applied"] = f"wait={wait}"
            return response
        body = await sync_to_async(generation_payload)(task, request=request)
        final = JsonResponse(body, status=200)
        for header in (
            "X-RateLimit-Limit-Requests",
            "X-RateLimit-Remaining-Requests",
            "X-RateLimit-Reset-Requests",
            "Location",
        ):
            if response.has_header(header):
                final[header] = response[header]
        final["Preference-Applied"] = f"wait={wait}"
        return final

    wrapper.csrf_exempt = True  # type: ignore[attr-defined]
    # drf-spectacular finds DRF views through these attributes.
    for name in ("cls", "initkwargs", "actions"):
        setattr(wrapper, name, getattr(view, name))
    return wrapper


async def _wait_terminal(task_id: str, seconds: int) -> GenerationTask | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    interval = 0.1
    while True:
        task = await GenerationTask.objects.filter(public_id=task_id).afirst()
        if task is not None and task.is_terminal:
            return await sync_to_async(_with_outputs)(task)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 1.0)


def _with_outputs(task: GenerationTask) -> GenerationTask:
    return GenerationTask.objects.prefetch_related("outputs").get(pk=task.pk)
