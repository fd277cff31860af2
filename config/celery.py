"""The Celery app. ``celery -A config worker`` and ``celery -A config beat`` find it here.

Without ``REDIS_URL`` there is no broker: tasks run in the web process through
``rivya_api.background`` (see ``CELERY_RIVYA_IN_PROCESS`` in settings).
"""

import os

from celery import Celery, signals

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
