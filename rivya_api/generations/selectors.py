"""Read queries for generations."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from rivya_api.generations.exceptions import InvalidGenerationFilterError
from rivya_api.generations.models import GenerationTask


def generation_list(*, account: Any, status: str | None = None, model: str | None = None) -> QuerySet:
    """The account's tasks (newest first once paginated), optionally by status and model."""
    queryset = GenerationTask.objects.filter(account=account).prefetch_related("outputs")
    if status:
        if status not in GenerationTask.Status.values:
            raise InvalidGenerationFilterError(f"status must be one of {', '.join(GenerationTask.Status.values)}.")
        queryset = queryset.filter(status=status)
    if model:
        queryset = queryset.filter(model=model)
    return queryset
