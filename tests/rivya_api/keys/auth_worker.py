"""A second Django process for cross-process tests.

Reads one JSON command per stdin line and answers one JSON line on stdout:
``{"op": "get", "secret": …}`` requests the test-only authenticated route
through Django's full stack (answering the status, error code and the number
of database queries it took); ``{"op": "revoke", "public_id": …}`` revokes a
key through the service. Run with the parent's DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import json
import sys

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from rivya_api.keys.models import APIKey  # noqa: E402
from rivya_api.keys.services import api_key_revoke  # noqa: E402


def main() -> None:
    client = Client()
    with override_settings(ROOT_URLCONF="tests.rivya_api.keys.urls"):
        sys.stdout.write(json.dumps({"ready": True}) + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "get":
                with CaptureQueriesContext(connection) as queries:
                    response = client.get("/api/v1/_test/whoami", HTTP_AUTHORIZATION=f"Bearer {command['secret']}")
                body = json.loads(response.content)
                code = body["error"]["code"] if "error" in body else None
                reply = {"status": response.status_code, "code": code, "queries": len(queries)}
            elif command["op"] == "revoke":
                api_key_revoke(api_key=APIKey.objects.get(public_id=command["public_id"]), source="worker")
                reply = {"revoked": command["public_id"]}
            else:
                reply = {"error": f"unknown op {command['op']}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
