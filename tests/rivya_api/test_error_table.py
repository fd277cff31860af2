"""One error path: every error the apps raise on purpose is a RivyaError that the one table in
rivya_api.common.errors gives a status, or one listed here as never reaching a request."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from rivya_api.common.errors import DOMAIN_ERRORS, domain_error_rows, exception_handler
from rivya_core.exceptions import RivyaError

ERROR_MODULES = [
    "rivya_api.catalog.exceptions",
    "rivya_api.chat.exceptions",
    "rivya_api.files.exceptions",
    "rivya_api.generations.exceptions",
    "rivya_api.idempotency.sealing",
    "rivya_api.keys.exceptions",
    "rivya_api.keys.scopes",
    "rivya_billing.exceptions",
    "rivya_webhooks.exceptions",
]

# Raised where no request can see them (configuration, the ledger's own consistency, a
# running job, an admin action): reaching a response would be a bug, so a 500 is right.
NOT_FOR_REQUESTS = {
    "CatalogConfigError",
    "PricingError",
    "InvalidAmountError",
    "InvalidReferenceError",
    "ReferenceConflictError",
    "HoldNotFoundError",
    "HoldNotPendingError",
    "StaleHoldError",
    "HoldLeaseActiveError",
    "RefundNotAllowedError",
    "LedgerConcurrencyError",
}
ROOTS = {
    "RivyaError",
    "CatalogError",
    "ChatError",
    "FileError",
    "GenerationError",
    "APIKeyError",
    "BillingError",
    "RivyaWebhooksError",
}


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _app_errors() -> set[type]:
    for module in ERROR_MODULES:
        importlib.import_module(module)
    return {
        cls
        for cls in _subclasses(RivyaError)
        if cls.__module__.startswith(("rivya_api", "rivya_billing", "rivya_webhooks", "rivya_core"))
    }


def test_every_path_in_the_table_names_a_rivya_error():
    assert all(issubclass(cls, RivyaError) for cls in domain_error_rows())
    assert len(domain_error_rows()) == len(DOMAIN_ERRORS)


def test_every_app_error_has_a_status_or_is_declared_internal():
    rows = domain_error_rows()
    unmapped = {
        cls.__name__
        for cls in _app_errors()
        if cls.__name__ not in ROOTS and not any(ancestor in rows for ancestor in cls.__mro__)
    }
    assert unmapped == NOT_FOR_REQUESTS


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code", "headers"),
    [
        (
            "rivya_api.chat.exceptions.ChatSessionBusyError",
            {"retry_after": 3},
            409,
            "session_busy",
            {"Retry-After": "3"},
        ),
        (
            "rivya_api.generations.exceptions.MaxCreditsExceededError",
            {},
            402,
            "max_credits_exceeded",
            {"x-should-retry": "false"},
        ),
        # A subclass takes its own row, not its parent's.
        ("rivya_api.files.exceptions.DownloadExpiredError", {}, 403, "download_link_expired", {}),
    ],
)
def test_the_table_renders_status_code_param_and_headers(path, kwargs, status, code, headers):
    module, name = path.rsplit(".", 1)
    exc = getattr(importlib.import_module(module), name)("It failed.", param="x", **kwargs)
    response = exception_handler(exc, {})
    assert response.status_code == status
    assert response.data["error"] | {"request_id": None} == {
        "type": response.data["error"]["type"],
        "code": code,
        "message": "It failed.",
        "param": "x",
        "request_id": None,
    }
    assert {name: response[name] for name in headers} == headers


SERVICE_FILES = [p for p in Path("rivya_api").rglob("*.py") if p.name in {"services.py", "selectors.py"}]
HTTP_ERRORS = {"ApiError", "NotFoundError", "ConflictError"}


@pytest.mark.parametrize("path", SERVICE_FILES, ids=str)
def test_no_service_raises_an_http_error(path):
    raised = {
        node.exc.func.id
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Raise) and isinstance(getattr(node.exc, "func", None), ast.Name)
    }
    assert not raised & HTTP_ERRORS
