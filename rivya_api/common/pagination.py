"""Cursor pagination by public id, newest first.

    ?limit=20&after=task_…  ->  {"object": "list", "data": [...], "has_more": bool, "next_cursor": id|null}

The cursor is the public id of the last object of the previous page; the page
continues strictly after its ``(created_at, pk)``, so new objects arriving at
the top never shift a page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import Q, QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from rivya_api.common.errors import ApiError
from rivya_api.conf import api_settings


def page_limit(request: Any) -> int:
    raw = request.query_params.get("limit")
    if raw in (None, ""):
        return api_settings.PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError("limit must be an integer.", param="limit") from None
    if not 1 <= limit <= api_settings.MAX_PAGE_SIZE:
        raise ApiError(f"limit must be between 1 and {api_settings.MAX_PAGE_SIZE}.", param="limit")
    return limit


NEWEST_FIRST = ("created_at", "pk")


def cursor_page(
    queryset: QuerySet,
    *,
    limit: int,
    after: str | None,
    id_field: str = "public_id",
    order: Sequence[str] = NEWEST_FIRST,
) -> tuple[list[Any], bool]:
    """One page of ``queryset``, descending by ``order``, strictly after the object ``after`` names.

    ``order`` must identify a row (end with a unique field): the ledger pages by its own ``sequence``.
    """
    queryset = queryset.order_by(*(f"-{field}" for field in order))
    if after:
        anchor = queryset.filter(**{id_field: after}).values(*order).first()
        if anchor is None:
            raise ApiError("after does not name an object in this list.", param="after")
        queryset = queryset.filter(_below(anchor, order))
    rows = list(queryset[: limit + 1])
    return rows[:limit], len(rows) > limit


def _below(anchor: dict[str, Any], order: Sequence[str]) -> Q:
    """Rows after ``anchor`` in descending ``order``: equal on a prefix of it, then less."""
    condition = Q()
    for depth, field in enumerate(order):
        equal = {name: anchor[name] for name in order[:depth]}
        condition |= Q(**equal, **{f"{field}__lt": anchor[field]})
    return condition


def page_response(
    request: Any,
    queryset: QuerySet,
    serialize: Callable[[list[Any]], list[Any]],
    *,
    order: Sequence[str] = NEWEST_FIRST,
) -> Response:
    """The list response of every cursor-paginated endpoint: ``?limit`` and ``?after`` read, one page served."""
    after = request.query_params.get("after") or None
    page, has_more = cursor_page(queryset, limit=page_limit(request), after=after, order=order)
    return Response(list_body(serialize(page), has_more=has_more))


class CursorPagination(BasePagination):
    """DRF pagination class over ``cursor_page``, with its schema for OpenAPI."""

    id_field = "public_id"

    def paginate_queryset(self, queryset: QuerySet, request: Any, view: Any = None) -> list[Any]:
        self.limit = page_limit(request)
        after = request.query_params.get("after") or None
        self.page, self.has_more = cursor_page(queryset, limit=self.limit, after=after, id_field=self.id_field)
        return self.page

    def get_paginated_response(self, data: list[Any]) -> Response:
        return Response(list_body(data, has_more=self.has_more))

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["object", "data", "has_more", "next_cursor"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": schema,
                "has_more": {"type": "boolean"},
                "next_cursor": {"type": ["string", "null"], "description": "Pass as `after` for the next page."},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": "Page size, 1 to 100 (default 20).",
                "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            },
            {
                "name": "after",
                "in": "query",
                "required": False,
                "description": "The `next_cursor` of the previous page.",
                "schema": {"type": "string"},
            },
        ]


def list_body(data: list[Any], *, has_more: bool) -> dict[str, Any]:
    next_cursor = data[-1]["id"] if (has_more and data) else None
    return {"object": "list", "data": data, "has_more": has_more, "next_cursor": next_cursor}
