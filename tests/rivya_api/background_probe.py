"""A test-only task and view that show where background work runs."""

import threading

from celery import shared_task
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

state: dict = {"release": threading.Event(), "ran": threading.Event(), "thread": None}


@shared_task(name="tests.background_probe")
def background_probe() -> None:
    state["release"].wait(10)
    state["thread"] = threading.current_thread().name
    state["ran"].set()


@csrf_exempt
def probe_view(request):  # type: ignore[no-untyped-def]
    with transaction.atomic():
        background_probe.delay_on_commit()
    return JsonResponse({"object": "probe"}, status=202)
