"""Webhook endpoints: create, change, rotate the secret, send a test event, disable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction

from rivya_webhooks import network
from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.crypto import secret_encrypt, secret_generate
from rivya_webhooks.exceptions import (
    EndpointDisabledError,
    InvalidEventTypesError,
    InvalidParameterError,
    UnknownEventTypeError,
)
from rivya_webhooks.models import WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import ALL_EVENTS, event_type_is_registered
from rivya_webhooks.services._common import Clock, iso, logger, now_from, registered_names
from rivya_webhooks.services.publishing import webhook_event_publish
from rivya_webhooks.services.sweeping import webhook_deliveries_sweep

MAX_DESCRIPTION = 500


def event_types_validate(event_types: Any) -> list[str]:
    """A subscription list: registered type names without duplicates, or ``["*"]``."""
    if (
        not isinstance(event_types, (list, tuple))
        or not event_types
        or not all(isinstance(item, str) for item in event_types)
    ):
        raise InvalidEventTypesError(
            'event_types must be a non-empty list of event type names, or ["*"] for every type.',
            param="event_types",
        )
    for name in event_types:
        if name != ALL_EVENTS and not event_type_is_registered(name):
            valid = f'Valid types: {registered_names()}; or "{ALL_EVENTS}" for every type, also those added later.'
            raise UnknownEventTypeError(name, param="event_types", valid=valid)
    if ALL_EVENTS in event_types:
        return [ALL_EVENTS]
    return list(dict.fromkeys(event_types))


def _description_validate(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidParameterError(
            f"description must be a string of at most {MAX_DESCRIPTION} characters.", param="description"
        )
    return description


def webhook_endpoint_create(
    *,
    account: Any,
    url: str,
    event_types: Sequence[str],
    description: str = "",
    resolver: network.Resolver | None = None,
    clock: Clock | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Create an enabled endpoint and return it with its secret (the only time it is shown).

    The URL passes the whole SSRF check first (scheme, credentials, https unless
    DEBUG, the host resolves and only to public addresses); nothing is written
    when it fails. One INSERT, in the caller's transaction if there is one.
    """
    network.url_validate(url, resolver=resolver)
    types = event_types_validate(event_types)
    description = _description_validate(description)
    secret = secret_generate()
    now = now_from(clock)
    endpoint = WebhookEndpoint.objects.create(
        account=account,
        url=url,
        description=description,
        event_types=types,
        secret_encrypted=secret_encrypt(secret),
        created_at=now,
        updated_at=now,
    )
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
    resolver: network.Resolver | None = None,
    clock: Clock | None = None,
) -> WebhookEndpoint:
    """Change what is given (``None`` leaves a field alone).

    A new URL passes the creation checks. Enabling a disabled endpoint clears
    its failure clock and resumes its pending deliveries (due ones are queued on
    commit); disabling it by hand pauses them.
    """
    if url is not None and url != endpoint.url:
        network.url_validate(url, resolver=resolver)
    types = event_types_validate(event_types) if event_types is not None else None
    description = _description_validate(description) if description is not None else None
    now = now_from(clock)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        fields = ["updated_at"]
        if url is not None:
            endpoint.url = url
            fields.append("url")
        if types is not None:
            endpoint.event_types = types
            fields.append("event_types")
        if description is not None:
            endpoint.description = description
            fields.append("description")
        resumed = False
        if enabled is not None and enabled != endpoint.enabled:
            endpoint.enabled = enabled
            if enabled:
                endpoint.disabled_reason = WebhookEndpoint.DisabledReason.NONE
                endpoint.disabled_at = None
                endpoint.failing_since = None
                resumed = True
            else:
                endpoint.disabled_reason = WebhookEndpoint.DisabledReason.MANUAL
                endpoint.disabled_at = now
            fields += ["enabled", "disabled_reason", "disabled_at", "failing_since"]
        endpoint.updated_at = now
        endpoint.save(update_fields=fields)
        if resumed:
            webhook_deliveries_sweep(clock=clock, endpoint=endpoint)
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries and attempts; its pending work stops. Events stay."""
    endpoint.delete()


def webhook_endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, clock: Clock | None = None
) -> tuple[WebhookEndpoint, str]:
    """Give the endpoint a new secret and return it (shown only now).

    The old secret keeps signing, as a second ``v1`` token, for
    ``SECRET_ROTATION_OVERLAP`` (24 h), so receivers can switch without losing
    a request. Rotating again within the overlap drops the oldest secret.
    """
    now = now_from(clock)
    overlap = timedelta(seconds=int(webhooks_settings.SECRET_ROTATION_OVERLAP))
    secret = secret_generate()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if overlap > timedelta(0):
            endpoint.previous_secret_encrypted = endpoint.secret_encrypted
            endpoint.previous_secret_expires_at = now + overlap
        else:
            endpoint.previous_secret_encrypted = ""
            endpoint.previous_secret_expires_at = None
        endpoint.secret_encrypted = secret_encrypt(secret)
        endpoint.updated_at = now
        endpoint.save(
            update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at", "updated_at"]
        )
    return endpoint, secret


def webhook_endpoint_test(*, endpoint: WebhookEndpoint, clock: Clock | None = None) -> WebhookEvent:
    """Publish a ``webhook.test`` event to this endpoint only, whatever types it subscribes to.

    The endpoint is locked first, so one deleted meanwhile raises ``WebhookEndpoint.DoesNotExist``
    (as update and rotation do) instead of a delivery row pointing at nothing.
    """
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().select_related("account").get(pk=endpoint.pk)
        if not endpoint.enabled:
            raise EndpointDisabledError("The endpoint is disabled; enable it before sending a test event.")
        return webhook_event_publish(
            account=endpoint.account,
            type="webhook.test",
            data={"endpoint_id": endpoint.public_id, "message": "A test event from the endpoint's test action."},
            endpoints=[endpoint],
            clock=clock,
        )


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, reason: str, clock: Clock | None = None) -> bool:
    """Disable an enabled endpoint for ``reason`` (gone or failing) and record a
    ``webhook_endpoint.disabled`` event, in one transaction. False if it was already disabled."""
    now = now_from(clock)
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now
        )
        if not changed:
            return False
        endpoint.refresh_from_db()
        logger.warning("Webhook endpoint %s disabled: %s", endpoint.public_id, reason)
        webhook_event_publish(
            account=endpoint.account,
            type="webhook_endpoint.disabled",
            data={
                "endpoint_id": endpoint.public_id,
                "url": endpoint.url,
                "reason": reason,
                "failing_since": iso(endpoint.failing_since) if endpoint.failing_since else None,
                "disabled_at": iso(now),
            },
            clock=clock,
        )
    return True
