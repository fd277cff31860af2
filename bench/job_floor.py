"""The floor of issue 25's no-op jobs row: a raw Celery task making a no-op generation's round trips.

The no-op jobs row compares our generations with raw Celery no-op tasks, which make no round
trip at all. This task is the least a no-op generation cannot do without, drained by the same
worker command, so the row says how far below 0.25x of raw Celery the round trips alone put a
job on this machine (as the chat floor does for targets 4 and 5, ``bench/turn_floor.py``):

1. **The claim**: one write that commits before the work starts (a generation is claimed by
   exactly one run; a crash after it is found by the sweep), one autocommitted
   ``UPDATE … WHERE status = 'queued' RETURNING``. Ours is BEGIN, one statement, COMMIT.
2. **The provider process**: the job sent to a long-lived child of a forkserver over a duplex
   pipe, and its output back (generations run their provider in a process the worker can kill,
   ``rivya_api.generations.provider_process``). The child answers at once.
3. **The output file**: one ``default_storage.save`` of the 1x1 PNG (no checks, no row).
4. **The finish**: one autocommitted ``UPDATE`` marking it succeeded. Ours is one query too
   (``BEGIN; …; COMMIT; <flush>``) with the settle, the outputs' rows and the event.
5. **The live update**: one Redis ``PUBLISH`` (ours sends the running and the finished updates
   through Channels' Redis layer).

The task is acknowledged late, as a generation's is (a worker lost mid-job re-delivers it).
Database access is psycopg 3 on a connection of the task's process (autocommit, statements
prepared as the driver prepares them), the cheapest there is from a worker; the table is the
floor's own, ``bench_job_floor`` (created by ``prepare``): no model of ours.
"""

from __future__ import annotations

import os
from typing import Any

import billiard
import redis
from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from bench.noop import PIXEL_PNG

TABLE = "bench_job_floor"
CHANNEL = "rivya-bench:job-floor"
_state: dict[str, Any] = {}


@shared_task(name="bench.job_floor", acks_late=True, ignore_result=True)
def job_floor_task(row_id: int) -> None:
    connection = _connection()
    claimed = connection.execute(
        f"UPDATE {TABLE} SET status = 'running', started_at = clock_timestamp() "
        "WHERE id = %s AND status = 'queued' RETURNING id",
        [row_id],
    ).fetchone()
    if claimed is None:
        return  # delivered twice: another run has it
    output = _provider_call(row_id)
    default_storage.save(f"bench-job-floor/{row_id}.png", ContentFile(output))
    connection.execute(
        f"UPDATE {TABLE} SET status = 'succeeded', completed_at = clock_timestamp() WHERE id = %s", [row_id]
    )
    _redis().publish(CHANNEL, row_id)


def _connection() -> Any:
    import psycopg

    if "db" not in _state or _state["db"].closed:
        _state["db"] = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _state["db"]


def _redis() -> redis.Redis:
    if "redis" not in _state:
        _state["redis"] = redis.Redis.from_url(settings.REDIS_URL)
    return _state["redis"]


def _provider_call(job: int) -> bytes:
    """One request and its answer over the pipe of this process's provider child (started once)."""
    if _state.get("provider_owner") != os.getpid():
        # billiard's, as the generations' (a prefork child is daemonic: the stdlib's refuses it children).
        context = billiard.get_context("forkserver")
        _state["provider"], child_end = context.Pipe(duplex=True)
        context.Process(target=_serve, args=(child_end,), name="bench-job-floor", daemon=True).start()
        child_end.close()
        _state["provider_owner"] = os.getpid()
    _state["provider"].send(("run", job, {"prompt": "n"}))
    _, output = _state["provider"].recv()
    return output


def _serve(connection: Any) -> None:
    """The provider child: answer each job with the PNG at once, until the worker's end closes."""
    while True:
        try:
            connection.recv()  # the job itself is not read: a no-op's answer does not depend on it
        except EOFError:
            return
        connection.send(("done", PIXEL_PNG))


def prepare(dsn: str, count: int) -> list[int]:
    """``count`` queued rows in the floor's table (created on first use), their ids."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, status text NOT NULL, "
            "started_at timestamptz, completed_at timestamptz)"
        )
        rows = conn.execute(
            f"INSERT INTO {TABLE} (status) SELECT 'queued' FROM generate_series(1, %s) RETURNING id", [count]
        ).fetchall()
    return [row[0] for row in rows]


FINISHED = (
    f"SELECT count(*), min(completed_at), max(completed_at) FROM {TABLE} WHERE id = ANY(%s) AND status = 'succeeded'"
)
