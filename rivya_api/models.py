"""Models of rivya_api, one import line per resource sub-package (keys, files, …)."""

from rivya_api.chat.models import *  # noqa: F403
from rivya_api.files.models import *  # noqa: F403
from rivya_api.generations.models import *  # noqa: F403
from rivya_api.idempotency.models import *  # noqa: F403
from rivya_api.keys.models import *  # noqa: F403
