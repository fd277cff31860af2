"""A database made by an earlier release migrates to the current head and keeps working.

``tests/fixtures/db-0.1.0.sql`` was written by rivya 0.1.0 (before ``rivya_core``; its
webhooks migration imported ``rivya_billing``). The test loads it into a new SQLite file,
runs this checkout's ``migrate`` on it, and then uses what it held through the current code:
the old API key authenticates, the wallet reads 45, the ledger replays clean, and the
webhook endpoint's encrypted secret still decrypts. No migration may rename a table or
drop a column that such a database has data in without carrying the data over.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUMP = ROOT / "tests" / "fixtures" / "db-0.1.0.sql"

CHECK = """
from django.test import Client
from django.utils import timezone
from rivya_webhooks.models import WebhookEndpoint

client = Client(HTTP_AUTHORIZATION="Bearer rvya_sk_A7gGjUuPr5cGeDjuGTRaztEDaGXIrQf7aNBNn3AlPNM")
response = client.get("/api/v1/credits")
assert response.status_code == 200, response.content
body = response.json()
assert (body["balance"], body["held"], body["available"]) == (45, 0, 45), body
endpoint = WebhookEndpoint.objects.get(public_id="we_Qj8mOksHzEX4pwi37owIT6gf")
assert endpoint.signing_secrets(timezone.now()) == ["whsec_JT8/KN53aDzHP3cuw77wVFVoOgN6jcTVLOuhWvAGlsc="]
print("legacy data ok")
"""


def manage(*args: str, database: Path) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}
    }
    env["DATABASE_URL"] = f"sqlite:///{database}"
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_0_1_0_database_migrates_to_the_current_head(tmp_path):
    database = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.executescript(DUMP.read_text())
    migrated = manage("migrate", "--noinput", database=database)
    assert migrated.returncode == 0, migrated.stderr
    plan = manage("migrate", "--plan", database=database)
    assert "No planned migration operations." in plan.stdout, plan.stdout
    ledger = manage("rivya_ledger_check", database=database)
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    checked = manage("shell", "-v", "0", "-c", CHECK, database=database)
    assert checked.returncode == 0, checked.stderr
    assert "legacy data ok" in checked.stdout
