"""Small filters of the settings pages: durations, signed credits, ISO timestamps, file links, JSON, log-out URL."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime

from rivya_api.conf import api_settings
from rivya_api.files.selectors import file_download_url
from rivya_api.pages.ledger import work_reference

register = template.Library()

_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


@register.filter
def seconds_span(value: Any) -> str:
    """``86400`` → ``1 day``; ``0`` → ``none``."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return ""
    if seconds <= 0:
        return "none"
    for size, name in _UNITS:
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


@register.filter
def as_datetime(value: Any) -> datetime | None:
    """An ISO 8601 string from a JSON field as a datetime (for the ``date`` filter)."""
    if isinstance(value, datetime):
        return value
    return parse_datetime(value) if isinstance(value, str) else None


@register.filter
def signed(value: Any) -> str:
    """Credits with an explicit sign: ``+5``, ``-3``, ``0``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return ""
    return f"+{number}" if number > 0 else str(number)


@register.filter
def file_url(file: Any, request: Any = None) -> str | None:
    """A fresh signed download URL of a file (None once it is deleted or expired)."""
    return file_download_url(file, request)


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def work_for(works: Any, entry: Any) -> Any:
    """The task or chat turn behind a ledger entry, from a ``works_for`` mapping (None if there is none)."""
    if not works:
        return None
    return works.get(work_reference(entry))


@register.simple_tag
def rivya_logout_url() -> str:
    """Where "Log out" posts: ``RIVYA_API["LOGOUT_URL"]`` (a URL name or a path); "" when it names nothing."""
    target = api_settings.LOGOUT_URL
    if not target:
        return ""
    if "/" in target:
        return target
    try:
        return reverse(target)
    except NoReverseMatch:
        return ""
