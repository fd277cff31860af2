"""No secret rests in clear anywhere (issue 21, item 5): after creating API keys and webhook endpoints
every way there is (services, settings pages, the API with and without an Idempotency-Key, secret
rotation with one, replays), a dump of every table, the cache (Redis when this run has it) and the
log holds none of the secrets."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from django.core.management import call_command
from django.db import connection

from rivya_api.keys.services import api_key_create
from tests.rivya_webhooks.support import PUBLIC_IP, StaticResolver

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.rivya_settings({"RIVYA_WEBHOOKS": {"RESOLVER": StaticResolver({"hooks.example.com": [PUBLIC_IP]})}}),
]

KEY_SECRET = re.compile(r"rvya_sk_[A-Za-z0-9_-]{20,}")
WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{20,}")


def _as_bytes(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


def database_dump() -> bytes:
    """Every row of every table, raw (binary columns as they are stored), plus ``dumpdata``."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                chunks.extend(_as_bytes(value) for value in row)
    return b"\n".join(chunks)


def cache_dump() -> bytes:
    url = os.environ.get("REDIS_URL", "")
    if not url.startswith("redis"):
        from django.core.cache import cache

        return b"\n".join(_as_bytes(value) for value in getattr(cache, "_cache", {}).values())
    import redis

    client = redis.Redis.from_url(url)
    chunks = []
    for key in client.scan_iter(count=1000):
        if client.type(key) == b"string":
            chunks.append(client.get(key) or b"")
    return b"\n".join(chunks)


def forms(secret: str) -> list[bytes]:
    """The secret, and its random part in the encodings a store might use."""
    body = secret.split("_", 2)[-1]
    return [secret.encode(), body.encode(), base64.b64encode(secret.encode())]


def test_a_dump_of_everything_holds_no_secret(api_client, account, member, caplog):
    secrets: list[str] = []
    # API keys: by service, and on the settings page (shown once there).
    secrets.append(api_key_create(account=account, name="service")[1])
    page = member.client.post("/settings/api-keys", {"name": "from the page"}, follow=True)
    secrets += KEY_SECRET.findall(page.content.decode())
    secrets.append(api_client.secret)
    # Webhook endpoints: plain, with an Idempotency-Key (and its replay), rotated with one, on the page.
    body = {"url": "https://hooks.example.com/a", "event_types": ["*"]}
    plain = api_client.post("/api/v1/webhooks", body, format="json").json()
    keyed = api_client.post("/api/v1/webhooks", body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    replay = api_client.post("/api/v1/webhooks", body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["secret"] == keyed.json()["secret"]
    rotated = api_client.post(f"/api/v1/webhooks/{plain['id']}/rotate-secret", format="json",
                              HTTP_IDEMPOTENCY_KEY="rotate-1")  # fmt: skip
    assert rotated.status_code == 200, rotated.content
    page = member.client.post("/settings/webhooks", {"url": "https://hooks.example.com/b", "event_types": ["*"]},
                              follow=True)  # fmt: skip
    secrets += [plain["secret"], keyed.json()["secret"], rotated.json()["secret"]]
    secrets += WEBHOOK_SECRET.findall(page.content.decode())
    assert len(set(secrets)) == len(secrets) >= 7

    dumps = {"database": database_dump(), "cache": cache_dump(), "log": caplog.text.encode()}
    out = _dumpdata()
    dumps["dumpdata"] = out.encode()
    for where, dump in dumps.items():
        for secret in secrets:
            for form in forms(secret):
                assert form not in dump, f"a secret ({secret[:12]}…) rests in clear in the {where}"


def _dumpdata() -> str:
    import io

    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    dumped = out.getvalue()
    # Binary fields are base64 in dumpdata: decode them too, so nothing hides behind the encoding.
    decoded = []
    for record in json.loads(dumped):
        for value in record["fields"].values():
            if isinstance(value, str) and len(value) % 4 == 0 and len(value) > 40:
                try:
                    decoded.append(base64.b64decode(value, validate=True).decode("utf-8", "replace"))
                except ValueError:
                    pass
    return dumped + "\n".join(decoded)
