"""Logging filters: records carry their request's id; idle periodic sweeps stay out of INFO logs."""

from __future__ import annotations

import ast
import logging

from rivya_api.common.request_id import current_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class PeriodicTaskFilter(logging.Filter):
    """Drops Celery's per-run INFO lines of the periodic sweeps when the run did nothing.

    Every sweep runs every 10 to 60 seconds, so beat's "Sending due task", the worker's
    "Task … received" and "Task … succeeded …: 0" would be most of an idle deployment's log.
    A run that did something (a non-zero, non-empty return value) is still logged, and
    so is everything at WARNING and above; ``LOG_LEVEL=DEBUG`` shows them all. Attach it
    to the loggers ``celery.beat``, ``celery.worker.strategy`` and ``celery.app.trace``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        name, result = _celery_task_of(record)
        if name is None or name not in _periodic_task_names():
            return True
        return result is not None and not _did_nothing(result)


def _celery_task_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """``(task name, repr of its result or None)`` of one of Celery's per-task INFO records."""
    data = getattr(record, "data", None)  # celery.app.trace and celery.worker.strategy pass it
    if isinstance(data, dict):
        return data.get("name"), data.get("return_value")
    if record.name == "celery.beat" and isinstance(record.args, tuple) and len(record.args) == 2:
        return str(record.args[1]), None  # "Scheduler: Sending due task %s (%s)": entry, task
    return None, None


def _periodic_task_names() -> set[str]:
    from celery import current_app

    return {entry["task"] for entry in (current_app.conf.beat_schedule or {}).values()}


def _did_nothing(result: str) -> bool:
    """Whether a task's result (its repr) says it found no work: 0, None, empty, or all zeros."""
    try:
        value = ast.literal_eval(result)
    except (ValueError, SyntaxError):
        return False
    if isinstance(value, dict):
        return not any(value.values())
    if isinstance(value, (list, tuple, set)):
        return not any(value)
    return not value
