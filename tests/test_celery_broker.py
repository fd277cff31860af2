"""The worker survives a Redis restart: a task that finishes after the reconnect acks into a closed channel."""

from __future__ import annotations

import logging
import os
import uuid

import pytest
from kombu import Connection, Queue

from config.broker import Transport

pytestmark = pytest.mark.redis


def test_an_ack_on_a_channel_of_a_collected_connection_is_a_connection_error():
    queue = Queue(f"rivya-test-broker-{uuid.uuid4().hex}")
    connection = Connection(os.environ["REDIS_URL"], transport=Transport)
    errors = connection.connection_errors
    channel = connection.default_channel
    bound = queue(channel)
    bound.declare()
    try:
        connection.Producer(channel).publish({"n": 1}, routing_key=queue.name, declare=[queue])
        message = bound.get(no_ack=False)
        assert message is not None
        # The state a lost connection leaves in kombu 5.7 (a CI worker's traceback): the channel the
        # running task's message came from has no pool any more, and its transport no client.
        channel._pool = None
        connection.transport.client = None
        with pytest.raises(errors) as raised:
            message.ack()
        assert not isinstance(raised.value, AttributeError)
        # Celery acks through ack_log_error with the connection errors: logged, not raised.
        message.ack_log_error(logging.getLogger(__name__), errors)
    finally:
        with Connection(os.environ["REDIS_URL"], transport=Transport) as cleanup:
            queue(cleanup.default_channel).delete()


def test_the_celery_app_uses_this_transport_with_redis():
    from config.celery import app

    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
