"""The task as the API shows it: in responses, in webhook payloads and on the live channel."""

from __future__ import annotations

from typing import Any

from rivya_api.common.dates import iso
from rivya_api.files.serializers import file_object
from rivya_api.generations.models import GenerationTask


def generation_payload(
    task: GenerationTask, *, request: Any = None, outputs: list[Any] | None = None
) -> dict[str, Any]:
    """``GET /generations/{id}``'s body; outputs carry fresh absolute signed URLs.

    ``outputs``: the task's files when the caller has them at hand (no query for them).
    """
    if outputs is None:
        outputs = list(task.outputs.all()) if task.pk else []
    error = {"code": task.error_code, "message": task.error_message} if task.status == "failed" else None
    return {
        "id": task.public_id,
        "object": "generation",
        "model": task.model,
        "kind": task.kind,
        "status": task.status,
        "progress": task.progress,
        "input": task.input,
        "metadata": task.metadata,
        "outputs": [file_object(file, request) for file in outputs],
        "error": error,
        # "refunded" is the deprecated first name of "released" (same value), kept for existing clients.
        "credits": {
            "reserved": task.price,
            "charged": task.charged,
            "released": task.released,
            "refunded": task.released,
        },
        "cancel_requested": task.cancel_requested,
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "completed_at": iso(task.completed_at),
        "expires_at": iso(task.expires_at),
    }
