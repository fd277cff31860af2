"""Content negotiation that always answers JSON.

API clients send all sorts of ``Accept`` headers; like OpenAI and Stripe we
answer JSON regardless instead of a 406. Event streams are chosen by the
request body (``stream: true``), not by ``Accept``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation


class JSONContentNegotiation(BaseContentNegotiation):
    def select_parser(self, request: Any, parsers: list[Any]) -> Any:
        content_type = request.content_type or ""
        for parser in parsers:
            if content_type.split(";")[0].strip().lower() == parser.media_type:
                return parser
        return None

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type
