"""Log records carry the request id of the request they belong to."""

from __future__ import annotations

import logging

from rivya_api.common.request_id import current_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True
