"""Celery's Redis transport, with one failure after a broker restart reported as what it is.

When the worker's broker connection is lost, kombu 5.7 drops the transport's
client (``Connection.collect``). A task that was running meanwhile then acks
its message on the old channel, which builds its Redis pool from that client
and fails with AttributeError. Celery treats that as a bug and stops the worker
for good ("Unrecoverable error"); a connection error is logged ("Couldn't ack")
and the worker goes on with its new connection. The message's ack is lost with
the connection either way: Redis redelivers it after the visibility timeout,
and every task here is idempotent.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("The broker connection this channel belonged to was closed.")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
