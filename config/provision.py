"""Provisioning helpers shared by ``bin/stack`` and ``bench/run.py``.

Standard library, psycopg and redis only: these run before Django's settings
are imported, so nothing here may import Django.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def say(message: str) -> None:
    sys.stderr.write(f"{Path(sys.argv[0]).name}: {message}\n")
    sys.stderr.flush()


def fail(message: str) -> None:
    say(message)
    raise SystemExit(2)


def secret_key() -> str:
    """A key that survives restarts (signed URLs, encrypted webhook secrets), kept out of git in var/."""
    path = VAR / "secret_key"
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
        say(f"generated SECRET_KEY into {path.relative_to(ROOT)} (set SECRET_KEY in production)")
    return path.read_text().strip()


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` when the server is up but the database is not there."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        if f'database "{name}" does not exist' not in str(exc):
            fail(f"cannot reach PostgreSQL at {parts.hostname}:{parts.port or 5432}: {str(exc).strip()}")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    say(f"created database {name}")


def ensure_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        fail(f"cannot reach Redis at {url}: {exc}")
