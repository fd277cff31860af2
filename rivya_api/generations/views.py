"""HTTP for generations: submit, read, list, cancel, and ``Prefer: wait`` long-polls."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema_view
from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from rivya_api.common.async_views import AsyncDispatch
from rivya_api.common.errors import ApiError
from rivya_api.common.pagination import CursorPagination
from rivya_api.common.parsers import JSONParser
from rivya_api.common.schema import (
    PAGINATION_PARAMETERS,
    ErrorExample,
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.views import AccountScopedMixin
from rivya_api.generations import selectors, services
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.presenters import generation_payload
from rivya_api.generations.serializers import (
    GenerationCreateInputSerializer,
    GenerationOutputSerializer,
    GenerationQuoteSerializer,
)
from rivya_api.keys.scopes import key_model_check

MAX_WAIT_SECONDS = 60
WAITING_ACTIONS = frozenset({"list", "create", "retrieve"})  # the routes that honour Prefer: wait
PREFER_WAIT = OpenApiParameter(
    name="Prefer",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="`wait=N` (N ≤ 60): hold the response until the task is terminal or N seconds pass.",
)


TASK_ID_PARAMETER = OpenApiParameter("task_id", str, OpenApiParameter.PATH, description="The task's id, `task_…`.")
NOT_FOUND = ErrorExample("generation_not_found", "No such generation: task_3kTq9Vb2LmXw8ZrN5cYp1HsD.", "task_id")
TASK_EXAMPLE = {
    "id": "task_3kTq9Vb2LmXw8ZrN5cYp1HsD",
    "object": "generation",
    "model": "rivya-image-1",
    "kind": "image",
    "status": "succeeded",
    "progress": 100,
    "input": {"prompt": "a lighthouse at dawn", "width": 512, "height": 512},
    "metadata": {"order": "1042"},
    "outputs": [
        {
            "id": "file_Hq8ZtV3nLc2XwP9rB4kYs7Md",
            "object": "file",
            "filename": "image.png",
            "bytes": 69120,
            "content_type": "image/png",
            "purpose": "generation_output",
            "url": "https://api.example.com/api/v1/files/file_Hq8ZtV3nLc2XwP9rB4kYs7Md/content?expires=1778495400"
            "&signature=kE2v0c3b7r1Yq8mUo4pZsT9wX6aLh5dN",
        }
    ],
    "error": None,
    "credits": {"reserved": 4, "charged": 4, "released": 0, "refunded": 0},
    "cancel_requested": False,
    "created_at": "2026-05-11T09:30:00Z",
    "started_at": "2026-05-11T09:30:01Z",
    "completed_at": "2026-05-11T09:30:03Z",
    "expires_at": "2026-05-18T09:30:00Z",
}
QUEUED_EXAMPLE = {
    **TASK_EXAMPLE,
    "status": "queued",
    "progress": 0,
    "outputs": [],
    "credits": {"reserved": 4, "charged": 0, "released": 0, "refunded": 0},
    "started_at": None,
    "completed_at": None,
}
SUBMIT_ERRORS = error_responses(
    400,
    402,
    404,
    codes={
        400: [
            ("missing_parameter", "input.prompt is required.", "input.prompt"),
            ("invalid_parameter", "input.width must be at least 64.", "input.width"),
            (
                "unknown_parameter",
                "'prompt' is a model parameter: put it inside input, e.g. "
                '{"model": "rivya-image-1", "input": {"prompt": "…"}}.',
                "prompt",
            ),
            ("file_not_found", "No such file: file_8Xq2LmZc0aT4vRbN7kYpW1sE.", "input.reference_image"),
            (
                "invalid_file_type",
                "File file_8Xq… is audio/wav; this parameter accepts image/png.",
                "input.reference_image",
            ),
            ("invalid_prefer_wait", "Prefer: wait is at most 60 seconds.", "Prefer"),
        ],
        402: [
            ("insufficient_credits", "Cannot reserve 4 credits: 2 available."),
            (
                "max_credits_exceeded",
                "This generation costs 4 credits, more than max_credits (3); nothing was reserved. "
                "Send max_credits of at least 4, or change the input to cost less.",
                "max_credits",
            ),
        ],
        404: [("model_not_found", "No such model: rivya-image-9.", "model")],
    },
)


@extend_schema_view(
    create=extend_schema(
        operation_id="createGeneration",
        summary="Create a generation",
        description=(
            "Validate `input` against the model's `parameters`, price it, reserve the price and queue the job; "
            "202 with the task. `dry_run: true` answers 200 with the price and creates nothing. With "
            "`Prefer: wait=N` the answer is held until the task is terminal (then 200) or N seconds pass."
        ),
        tags=["Generations"],
        request=GenerationCreateInputSerializer,
        parameters=[PREFER_WAIT],
        responses={202: GenerationOutputSerializer, 200: GenerationQuoteSerializer, **SUBMIT_ERRORS},
        examples=[
            OpenApiExample(
                "submit",
                value={"model": "rivya-image-1", "input": {"prompt": "a lighthouse at dawn"}, "max_credits": 10},
                request_only=True,
            ),
            OpenApiExample("queued", value=QUEUED_EXAMPLE, response_only=True, status_codes=["202"]),
            OpenApiExample(
                "quote",
                value={
                    "object": "generation.quote",
                    "model": "rivya-image-1",
                    "price": 4,
                    "input": {"prompt": "a lighthouse at dawn", "width": 512, "height": 512},
                },
                response_only=True,
                status_codes=["200"],
            ),
        ],
    ),
    list=extend_schema(
        operation_id="listGenerations",
        summary="List generations",
        description="The account's tasks, newest first, optionally by `status` and `model`.",
        tags=["Generations"],
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in GenerationTask.Status]),
            OpenApiParameter("model", str),
            *PAGINATION_PARAMETERS,
        ],
        responses={200: list_of(GenerationOutputSerializer), **error_responses(400)},
        examples=[
            OpenApiExample(
                "tasks",
                value={"object": "list", "data": [TASK_EXAMPLE], "has_more": False, "next_cursor": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
    ),
    retrieve=extend_schema(
        operation_id="getGeneration",
        summary="Get a generation",
        description="Status, progress, outputs with fresh signed URLs, error and credits. "
        "`Prefer: wait=N` long-polls until the task is terminal or N seconds pass.",
        tags=["Generations"],
        parameters=[TASK_ID_PARAMETER, PREFER_WAIT],
        responses={
            200: GenerationOutputSerializer,
            **error_responses(
                400,
                404,
                codes={
                    400: [("invalid_prefer_wait", "Prefer: wait is at most 60 seconds.", "Prefer")],
                    404: [NOT_FOUND],
                },
            ),
        },
        examples=[OpenApiExample("succeeded", value=TASK_EXAMPLE, response_only=True, status_codes=["200"])],
    ),
    cancel=extend_schema(
        operation_id="cancelGeneration",
        summary="Cancel a generation",
        description="A queued task is canceled at once and its credits released; a running one is asked to stop "
        "(`cancel_requested: true`) and ends canceled; a finished one is a 409.",
        tags=["Generations"],
        request=None,
        parameters=[TASK_ID_PARAMETER],
        responses={
            200: GenerationOutputSerializer,
            **error_responses(
                404,
                409,
                codes={
                    404: [NOT_FOUND],
                    409: [("generation_not_cancelable", "The generation is already succeeded.")],
                },
            ),
        },
        examples=[
            OpenApiExample(
                "canceled",
                value={
                    **QUEUED_EXAMPLE,
                    "status": "canceled",
                    "credits": {"reserved": 4, "charged": 0, "released": 4, "refunded": 4},
                },
                response_only=True,
                status_codes=["200"],
            )
        ],
    ),
)
class GenerationViewSet(AsyncDispatch, AccountScopedMixin, viewsets.GenericViewSet):
    """Generations; ``Prefer: wait=N`` on list, create and retrieve long-polls on the event loop.

    The handlers are sync and run as in any DRF view (auth, throttles, validation,
    idempotency). If one answered with a non-terminal task and the request asked
    to wait, ``dispatch`` then polls the task's status with short queries and
    ``asyncio.sleep`` in between: no thread and no database connection is held
    while waiting.
    """

    required_scopes = {
        "list": "generations:read",
        "retrieve": "generations:read",
        "create": "generations:write",
        "cancel": "generations:write",
    }  # rivya_api.keys.scopes
    parser_classes = [JSONParser]
    pagination_class = CursorPagination
    serializer_class = GenerationOutputSerializer
    lookup_url_kwarg = "task_id"

    wait_seconds: int | None = None  # from ``Prefer: wait=N``

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.action in WAITING_ACTIONS:
            self.wait_seconds = prefer_wait(request)  # a 400 like any invalid parameter, after the checks

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = await super().dispatch(request, *args, **kwargs)
        wait = self.wait_seconds
        if wait is None or response.status_code not in (200, 202) or "status" not in getattr(response, "data", {}):
            return response
        return await _waited(request, response, wait)

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
        key_model_check(request.user.api_key, params["model"])
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
            on_created=lambda task: self.idempotency_bind(task.public_id),
            spend_limit=self.request.user.api_key.spend_limit_id,
        )
        return self._accepted(task, outputs=[])  # just queued: no outputs to look up

    def _accepted(self, task: GenerationTask, outputs: list[Any] | None = None) -> Response:
        body = generation_payload(task, request=self.request, outputs=outputs)
        location = f"{self.request.path}/{task.public_id}"
        return Response(body, status=http.HTTP_202_ACCEPTED, headers={"Location": location})

    def idempotency_recover(self, reference: str) -> Response | None:
        # A retry of a submission whose first attempt created the task and then died: that task, as accepted.
        if self.action != "create":
            return None
        return self._accepted(services.generation_get(account=self.account, task_id=reference))

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


def prefer_wait(request: Any) -> int | None:
    """Seconds from ``Prefer: wait=N``; None when absent. Over the limit: 400 ``invalid_prefer_wait``."""
    match = re.search(r"(?:^|[;,\s])wait=(\d+)", request.headers.get("Prefer", ""))
    if not match:
        return None
    seconds = int(match.group(1))
    if seconds > MAX_WAIT_SECONDS:
        raise ApiError(
            f"Prefer: wait is at most {MAX_WAIT_SECONDS} seconds.", code="invalid_prefer_wait", param="Prefer"
        )
    return seconds


async def _waited(request: HttpRequest, response: Any, wait: int) -> HttpResponse:
    """``response`` (a non-terminal task) once the task is terminal, or as it is after ``wait`` seconds."""
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
