"""DRF parsers behind the hostile-input gate.

``JSONParser`` returns the body the gate (``rivya_api.common.gate``) already
parsed and checked, so a body is parsed once; without the gate (a host that
left the middleware out, a test's request factory) it applies the same rules
itself. Every API view parses JSON with it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers

from rivya_api.common import hostile

_UNSET = object()


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        request = (parser_context or {}).get("request")
        django_request = getattr(request, "_request", request)
        checked = getattr(django_request, "rivya_json", _UNSET)
        if checked is not _UNSET:
            return checked
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            raise parsers.ParseError("JSON parse error - the body is empty.")
        return hostile.json_loads(raw)
