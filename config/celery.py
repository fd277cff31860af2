"""The Celery app. ``celery -A config worker`` and ``celery -A config beat`` find it here.

Without ``REDIS_URL`` there is no broker: tasks run in the web process through
``rivya_api.background`` (see ``CELERY_RIVYA_IN_PROCESS`` in settings).
"""

import logging
import os

from celery import Celery, signals
from celery.worker.consumer import Consumer as _CeleryConsumer

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config", task_cls="rivya_api.background:BackgroundTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect(weak=False, dispatch_uid="rivya_db_connections_prerun")
@signals.task_postrun.connect(weak=False, dispatch_uid="rivya_db_connections_postrun")
def _release_database_connections(**_: object) -> None:
    """Give this process's database connections back (to the pool, with one) around every task.

    What Django does around each request. With ``CELERY_DB_REUSE_MAX`` set, Celery's
    own fixup no longer closes connections per task (it would also close the pool
    under prefork), so this does: ``CONN_MAX_AGE`` is 0 with the pool, so a pooled
    connection goes back to the pool (checked on its next checkout) and a broken
    one is discarded, which is how a worker recovers from a database restart.
    """
    from django.db import close_old_connections

    close_old_connections()


class Consumer(_CeleryConsumer):
    """Celery's consumer, reconnecting even when closing the lost connection trips over itself.

    With Celery/kombu 5.7 and Redis, ``collect()`` after a lost connection drops the
    transport's client, and the ``close()`` that follows can then raise AttributeError
    (not a connection error, so not ignored): the consumer never restarts and the worker
    stops consuming. The connection is gone either way; reconnecting is what matters.
    """

    def on_connection_error_after_connected(self, exc: BaseException) -> None:
        connection = self.connection
        if connection is not None:
            close = connection.close

            def close_quietly() -> None:
                try:
                    close()
                except AttributeError:
                    logger.warning("Closing the lost broker connection failed; reconnecting anyway", exc_info=True)

            connection.close = close_quietly
        super().on_connection_error_after_connected(exc)
