"""Settings for rivya_webhooks, read from the ``RIVYA_WEBHOOKS`` dict.

Read ``webhooks_settings.X`` inside functions, never at import time, so that
``override_settings`` and the ``rivya_settings`` test fixture take effect.
"""

from __future__ import annotations

from typing import Any

from rivya_core.conf import AppSettings

DEFAULTS: dict[str, Any] = {
    # Allow endpoints on loopback/private/link-local addresses (self-hosting, local
    # development). The reference project reads RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS.
    "ALLOW_PRIVATE_NETWORKS": False,
    # With DEBUG on (local development), allow loopback receivers (127.0.0.1, ::1) anyway.
    "ALLOW_LOOPBACK_IN_DEBUG": True,
    # Networks (CIDR strings) always allowed, even link-local or cloud metadata ones:
    # what ALLOW_PRIVATE_NETWORKS never opens has to be listed here by name.
    "ALLOWED_NETWORKS": [],
    # Seconds for each phase of a delivery request (connect, write, read) and for the
    # whole response; Standard Webhooks asks for 15-30 s.
    "TIMEOUT": 15.0,
    # Waits after the 1st, 2nd, ... failed attempt (seconds): 5 s, 5 min, 30 min, 2 h,
    # 5 h, 10 h, 14 h, 20 h, 24 h, about 3.1 days in all. After the last, the delivery fails.
    "RETRY_SCHEDULE": [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
    # Each wait is multiplied by a random factor in [1 - JITTER, 1 + JITTER].
    "RETRY_JITTER": 0.2,
    # A Retry-After (on 429 and 503) longer than this is capped to it (seconds).
    "MAX_RETRY_AFTER": 86400,
    # An endpoint whose deliveries have failed for this long with no success in between
    # is disabled and a ``webhook_endpoint.disabled`` event is recorded (seconds).
    "DISABLE_AFTER_FAILING_FOR": 5 * 86400,
    # After a secret rotation the old secret keeps signing alongside the new one this long.
    "SECRET_ROTATION_OVERLAP": 86400,
    # Events (with their deliveries and attempts) are deleted after this many days.
    "EVENT_RETENTION_DAYS": 30,
    # Response bodies are stored up to this many bytes per attempt.
    "RESPONSE_BODY_LIMIT": 20 * 1024,
    # Largest envelope accepted by webhook_event_publish (bytes).
    "MAX_PAYLOAD_BYTES": 256 * 1024,
    # Callable(host: str) -> list[str] of IP addresses. Tests inject a fixed table here.
    "RESOLVER": "rivya_webhooks.network.system_resolver",
    # A retry due within this many seconds is queued with a Celery countdown at once;
    # later ones are queued by the sweeper when due. Keep it well under the broker's
    # visibility timeout, or the Redis transport redelivers the message early.
    "COUNTDOWN_MAX_SECONDS": 300,
    # A due delivery that was queued this long ago and not picked up is queued again by
    # the sweeper (the broker lost it, e.g. a Redis restart without persistence).
    "REDISPATCH_AFTER": 300,
    # How many due deliveries one sweep queues at most.
    "SWEEP_BATCH_SIZE": 1000,
    # On PostgreSQL, claim a delivery (with its event and endpoint) and record a success in
    # one statement each (services/single_statement.py) instead of the ORM's several round
    # trips. False runs the plain ORM path: the switch if a Django upgrade breaks it.
    "SINGLE_STATEMENT": True,
    # With SINGLE_STATEMENT, the deliveries of one batch message (one endpoint, published in
    # one transaction) are claimed in one statement and their successes recorded in one
    # (services/delivery_batch.py). False claims and records them one at a time.
    "BATCH_STATEMENTS": True,
    # On PostgreSQL, publish an event's row and ask whether its account has any enabled endpoint
    # in one statement built once (services/pg_event.py); the endpoints are listed only when it
    # has. False runs the plain ORM INSERT and endpoint query on every event.
    "EVENT_INSERT_SQL": True,
    # User-Agent header of every delivery request.
    "USER_AGENT": "Rivya-Webhooks/1.0 (+https://www.standardwebhooks.com/)",
}

IMPORT_STRINGS = ("RESOLVER",)

webhooks_settings = AppSettings("RIVYA_WEBHOOKS", DEFAULTS, import_strings=IMPORT_STRINGS)
