"""Run Django in a real second process against this test run's database and Redis."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]


def database_url() -> str:
    """A DATABASE_URL for the test database this process is using (SQLite file or PostgreSQL)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def django_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    if not getattr(settings, "REDIS_URL", ""):
        env.pop("REDIS_URL", None)
    return env


def manage_py() -> list[str]:
    return [sys.executable, str(ROOT / "manage.py")]
