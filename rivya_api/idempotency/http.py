"""The HTTP side of idempotency, shared by the DRF mixin and async (streaming) views.

- ``idempotency_key_from_request``: the ``Idempotency-Key`` header, validated.
- ``request_fingerprint``: what makes two requests "the same request".
- ``claim_refusal``: the 409 / 422 error for a claim that must not run.
- ``replay_response`` / ``stored_response_parts``: a stored outcome, out and in.

They accept a Django ``HttpRequest`` or a DRF ``Request`` (which proxies
``headers``, ``body``, ``POST`` and ``FILES``) and never touch the database,
so an async view may call them directly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.http import HttpResponse, QueryDict
from django.http.request import RawPostDataException

from rivya_api.common import hostile
from rivya_api.common.errors import UNAVAILABLE_RETRY_AFTER, ApiError
from rivya_api.conf import api_settings
from rivya_api.idempotency import services
from rivya_api.idempotency.services import ClaimOutcome, IdempotencyClaim

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_UNSET = object()

# A completed key whose stored response no longer decrypts: the client uses a new key.

# Responses with these statuses mean the request was rejected before it
# executed — malformed or invalid input (400), no or bad key (401), not allowed
# (403), wrong method (405), unacceptable or unsupported media (406, 415),
# too large (413), rate limited (429) — so they are not stored and the key
# stays free for a corrected retry. Every other outcome, success or error
# (402, 404, 409, 5xx …), is stored once the view's handler has started.
REJECTED_BEFORE_EXECUTION = frozenset({400, 401, 403, 405, 406, 413, 415, 429})
# The database or broker failed mid-request (503): whether the work committed is unknown, so the
# outcome is not stored; the claim lapses after the answer's Retry-After instead.
OUTCOME_UNKNOWN = 503


def idempotency_key_from_request(request: Any) -> str | None:
    """The request's ``Idempotency-Key``, or None when absent.

    1–255 printable ASCII characters (space to ``~``). The IETF draft sends it
    as a Structured Field string (``"abc"``); that form is unquoted, so
    ``"abc"`` and ``abc`` are the same key. Anything else is a 400
    ``idempotency_key_invalid``.
    """
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = _unquote_sf_string(raw.strip())
    if not (1 <= len(key) <= MAX_KEY_LENGTH) or any(not (0x20 <= ord(ch) <= 0x7E) for ch in key):
        raise ApiError(
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID v4 is recommended).",
            code="idempotency_key_invalid",
            param=HEADER,
            status=400,
        )
    return key


def _unquote_sf_string(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        chars = iter(inner)
        for ch in chars:
            if ch == "\\":
                ch = next(chars, "\\")
            out.append(ch)
        return "".join(out)
    return value


def request_fingerprint(request: Any) -> str:
    """SHA-256 (hex) of the method, path, query and body, compared by meaning.

    - JSON bodies are canonicalised (sorted keys, no insignificant whitespace),
      so key order and formatting do not matter; array order and explicit
      nulls do. An unparsable body is hashed as bytes (the view will 400 it).
    - Multipart bodies are fingerprinted by their parsed fields (sorted, every
      value) and, per file, its field, file name, size and SHA-256 — never by
      the raw bytes, because clients choose a new boundary on every retry.
    - Any other body is hashed as bytes; the query string is sorted.

    Reading the body here is safe for the view: Django keeps it for DRF's
    parsers, and uploaded files are rewound after hashing.
    """
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        kind, body_digest = "multipart", _multipart_digest(request)
    else:
        kind, body_digest = _body_digest(
            request, is_json=content_type == "application/json" or content_type.endswith("+json")
        )
    query = _canonical_query(request.META.get("QUERY_STRING", ""))
    material = "\n".join([request.method.upper(), request.path, query, kind, body_digest])
    return hashlib.sha256(material.encode()).hexdigest()


def _canonical_json_digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _body_digest(request: Any, *, is_json: bool) -> tuple[str, str]:
    checked = getattr(request, "rivya_json", _UNSET)  # parsed and checked by the gate
    if checked is not _UNSET:
        return "json", _canonical_json_digest(checked)
    try:
        body = request.body
    except RawPostDataException:
        # A DRF parser consumed the stream before us (something read
        # request.data first): canonicalise what it parsed, which for JSON is
        # exactly what json.loads would have given, so the digest is the same.
        data = request.data
        return "json", _canonical_json_digest(dict(data.lists()) if isinstance(data, QueryDict) else data)
    if is_json:
        try:
            return "json", _canonical_json_digest(hostile.json_loads(body) if body else None)
        except ApiError:
            pass  # hashed as bytes; the view's parser answers 400
    return "bytes", hashlib.sha256(body).hexdigest()


def _canonical_query(query_string: str) -> str:
    if not query_string:
        return ""
    pairs = sorted(QueryDict(query_string).lists())
    return json.dumps(pairs, separators=(",", ":"), ensure_ascii=False)


def _multipart_digest(request: Any) -> str:
    fields = sorted((name, list(values)) for name, values in request.POST.lists())
    files = []
    for name, uploads in sorted(request.FILES.lists()):
        for upload in uploads:
            digest = hashlib.sha256()
            upload.seek(0)
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
            files.append([name, upload.name, upload.size, digest.hexdigest()])
    canonical = json.dumps({"fields": fields, "files": files}, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_refusal(claim: IdempotencyClaim) -> ApiError:
    """The error for a claim that must not run: 409 in flight, 422 reused."""
    if claim.outcome is ClaimOutcome.IN_FLIGHT:
        return ApiError(
            "A request with this Idempotency-Key is still being processed; retry after the Retry-After delay.",
            code="idempotency_key_in_flight",
            status=409,
            headers={"Retry-After": str(claim.retry_after)},
        )
    if claim.outcome is ClaimOutcome.MISMATCH:
        return ApiError(
            "This Idempotency-Key was already used with a different request (method, path or body); "
            "use a new key for a new request.",
            code="idempotency_key_reused",
            param=HEADER,
            status=422,
        )
    raise ValueError(f"Claim outcome {claim.outcome} is not a refusal")


def stored_response_parts(response: HttpResponse) -> tuple[int, dict[str, str], bytes]:
    """(status, replayable headers, body bytes) of a rendered, non-streaming response."""
    wanted = {name.lower() for name in api_settings.IDEMPOTENCY_REPLAYED_HEADERS}
    headers = {name: value for name, value in response.items() if name.lower() in wanted}
    return response.status_code, headers, bytes(response.content)


def outcome_record(*, record: Any, response: HttpResponse) -> None:
    """What a rendered response leaves under the key it answered, one rule for every POST.

    Rejected before execution: the key is released. A 503 (the database or broker failed
    mid-request, so whether the work committed is unknown): not stored, since it would be
    replayed to every retry for good; the claim lapses after Retry-After and a retry takes the
    key over, answering from the work if it committed (``idempotency_bind``) or running anew.
    Anything else is stored for replay.
    """
    if response.status_code in REJECTED_BEFORE_EXECUTION:
        services.idempotency_release(record=record)
    elif response.status_code == OUTCOME_UNKNOWN:
        services.idempotency_renew(record=record, seconds=UNAVAILABLE_RETRY_AFTER)
    else:
        status, headers, body = stored_response_parts(response)
        services.idempotency_complete(record=record, status_code=status, headers=headers, body=body)


def replay_response(claim: IdempotencyClaim) -> HttpResponse:
    """The stored response, unchanged, marked ``Idempotent-Replayed: true``."""
    record = claim.record
    response = HttpResponse(bytes(record.response_body), status=record.response_status or 200)
    # HttpResponse brings a default Content-Type; the stored one (if any) wins.
    if "Content-Type" not in {name.title() for name in record.response_headers}:
        del response["Content-Type"]
    for name, value in record.response_headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response
