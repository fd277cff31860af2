"""Celery workers started by tests of the orghost host: the test workers' settings on its account model.

A worker must share the host's account model; on the user model it would read
``task.account`` from ``auth_user`` by an organisation's id.
"""

from tests.orghost import settings as host
from tests.worker_settings import *  # noqa: F403
from tests.worker_settings import RIVYA_API

INSTALLED_APPS = host.INSTALLED_APPS
RIVYA_ACCOUNT_MODEL = host.RIVYA_ACCOUNT_MODEL
RIVYA_API = {
    **RIVYA_API,
    "ACCOUNT_FOR_USER": host.RIVYA_API["ACCOUNT_FOR_USER"],
    "ACCOUNT_IS_ACTIVE": host.RIVYA_API["ACCOUNT_IS_ACTIVE"],
}
