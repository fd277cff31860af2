"""Standard Webhooks signatures (https://www.standardwebhooks.com/), via the ``standardwebhooks`` package.

    webhook-id:        the event id (stable across retries, resends and endpoints; no ".")
    webhook-timestamp: integer Unix seconds of this attempt
    webhook-signature: "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>", one token per
                       active secret, space-separated (two during a rotation)

The body is signed and sent as the same bytes: the stored envelope text, UTF-8.
"""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook

from rivya_webhooks.conf import webhooks_settings


def signature_header(*, msg_id: str, timestamp: int, body: str, secrets: list[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,`` token per secret, newest secret first."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body) for secret in secrets)


def signed_headers(*, msg_id: str, timestamp: int, body: str, secrets: list[str]) -> dict[str, str]:
    """Every header of a delivery request except Content-Length (httpx sets it from the bytes)."""
    if "." in msg_id:
        raise ValueError("webhook-id must not contain '.'")
    return {
        "content-type": "application/json",
        "user-agent": webhooks_settings.USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(msg_id=msg_id, timestamp=int(timestamp), body=body, secrets=secrets),
    }
