"""Settings for Celery workers started by tests: the reference project plus the test models,
with short heartbeats so a killed worker is noticed within a test's time."""

from datetime import timedelta

from config.settings import *  # noqa: F403
from config.settings import RIVYA_API, RIVYA_MODELS
from tests.rivya_api.generations.fakes import GENERATION_MODELS

RIVYA_API = {
    **RIVYA_API,
    "MODELS": [*RIVYA_MODELS, *GENERATION_MODELS],
    "GENERATION_HEARTBEAT_INTERVAL": timedelta(seconds=1),
}
