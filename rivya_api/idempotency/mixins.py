"""``IdempotencyMixin``: the DRF hook that makes every POST of an API view idempotent.

``AccountScopedMixin`` inherits it, so every authenticated view gets it by
default; a view that must not have it (or handles it itself, like a streaming
chat turn) sets ``idempotency_enabled = False``.

Where "execution" begins, precisely:

1. DRF's ``initial`` runs first: content negotiation, authentication,
   permissions, throttles. A request rejected there (401, 403, 406, 429) never
   touches the key.
2. Then the ``Idempotency-Key`` header is validated (400
   ``idempotency_key_invalid``), the body is read and fingerprinted (an
   unreadable or oversize body is 400/413 here, still before any claim), and the
   key is claimed for the account: a replay, a 409 in flight or a 422 reused
   answers at this point and the handler never runs.
3. The handler runs. Its response is stored and replayed to retries —
   successes and errors alike, a crash as the 500 the client saw — unless its
   status says the input was rejected before execution (400 validation, 401,
   403, 405, 406, 413, 415, 429: ``http.REJECTED_BEFORE_EXECUTION``); then the
   claim is released and a corrected retry may reuse the key. A 503 (the
   database or broker failed mid-request) is not stored either: the claim is
   left to lapse after ``Retry-After``, as if the process had died (below).

A process can die after the handler's work committed and before its response
was stored. The lease then expires and a retry takes the key over; run again,
the handler would do the work twice. A handler that creates something calls
``self.idempotency_bind(reference)`` inside the transaction that creates it, so
the key names the work exactly when the work exists; a retry that takes over a
key with a reference does not run the handler but answers
``idempotency_recover(reference)`` (the view builds the response from the
object) and stores that as the key's outcome.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from django.template.response import SimpleTemplateResponse

from rivya_api.common.auth import request_account
from rivya_api.common.errors import ConflictError, response_for_exception
from rivya_api.idempotency import services
from rivya_api.idempotency.http import (
    REJECTED_BEFORE_EXECUTION,
    REPLAYED_HEADER,
    claim_refusal,
    idempotency_key_from_request,
    outcome_record,
    replay_response,
    request_fingerprint,
)

logger = logging.getLogger(__name__)


class _Replay(Exception):
    """Carries a stored response out of ``initial`` past the handler."""

    def __init__(self, response: Any) -> None:
        super().__init__("idempotent replay")
        self.response = response


class IdempotencyMixin:
    """Claims the ``Idempotency-Key`` of a POST before the handler and stores its outcome after."""

    #: False on a view whose POSTs must not be made idempotent by this mixin.
    idempotency_enabled: bool = True

    _idempotency_claim: services.IdempotencyClaim | None = None

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self._idempotency_claim = None
        if request.method != "POST" or not self.idempotency_enabled:
            return
        claim = self.idempotency_claim_request(request)
        if claim is None:
            return
        if claim.proceed:
            self._idempotency_claim = claim
            if claim.record.reference:
                # A dead attempt's lease was taken over, and its work had committed.
                recovered = self.idempotency_recover(claim.record.reference)
                if recovered is not None:
                    logger.warning(
                        "Idempotency-Key %r: the first attempt's work (%s) committed but its process died "
                        "before answering; answering from the work instead of running the request again",
                        claim.record.key,
                        claim.record.reference,
                    )
                    recovered[REPLAYED_HEADER] = "true"  # the first attempt's outcome, not a new execution
                    raise _Replay(recovered)
        elif claim.outcome is services.ClaimOutcome.REPLAY:
            raise _Replay(replay_response(claim))
        else:
            raise claim_refusal(claim)

    def idempotency_claim_request(self, request: Any) -> services.IdempotencyClaim | None:
        """Claim the request's ``Idempotency-Key`` for its account; None without one (400 if malformed).

        ``initial`` acts on the claim; a view with its own answers to a claim (a streamed chat
        turn attaches to the running turn instead of a 409) calls this itself.
        """
        key = idempotency_key_from_request(request)
        if key is None:
            return None
        return services.idempotency_claim(
            account=request_account(request),
            key=key,
            fingerprint=request_fingerprint(request),
            request_method=request.method,
            request_path=request.path,
        )

    def idempotency_bind(self, reference: str) -> None:
        """Name the work this request created (``task_…``) on its Idempotency-Key, if it has one.

        Call it inside the transaction that creates the work: the name commits
        exactly when the work does. Raises 409 (rolling the work back) if this
        request no longer owns the key, which a retry took over meanwhile.
        """
        claim = self._idempotency_claim
        if claim is None:
            return
        if not services.idempotency_reference_set(record=claim.record, reference=reference):
            raise ConflictError(
                "Another request with this Idempotency-Key took it over.", code="idempotency_key_in_flight"
            )

    def idempotency_recover(self, reference: str) -> Any:
        """The response for work a dead attempt committed under the key (``reference`` from
        ``idempotency_bind``), or None to run the request again. Views that bind override it."""
        return None

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, _Replay):
            return exc.response
        if self._idempotency_claim is None:
            return super().handle_exception(exc)  # type: ignore[misc]
        try:
            return super().handle_exception(exc)  # type: ignore[misc]
        except Exception as uncaught:
            # The handler started and crashed: whatever it did may have
            # happened, so the retry gets this same 500 (as Stripe does), not a
            # second execution. Rendered and logged as the API middleware would.
            return response_for_exception(uncaught)

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        claim, self._idempotency_claim = self._idempotency_claim, None
        if claim is None:
            return response
        try:
            if response.streaming and response.status_code not in REJECTED_BEFORE_EXECUTION:
                logger.warning(
                    "%s returned a streaming response, which cannot be stored for Idempotency-Key "
                    "replays; the key is released. Set idempotency_enabled = False and use "
                    "rivya_api.idempotency.services directly.",
                    type(self).__name__,
                )
                services.idempotency_release(record=claim.record)
            else:
                if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                    response.render()
                outcome_record(record=claim.record, response=response)
        except DatabaseError:
            # The response stands; the claim's lease will expire and free the key.
            logger.exception("Could not store the outcome of Idempotency-Key %r", claim.record.key)
        return response
