"""Django admin of rivya_api, one import line per resource sub-package."""

from rivya_api.chat import admin as chat_admin  # noqa: F401
from rivya_api.files import admin as files_admin  # noqa: F401
from rivya_api.generations import admin as generations_admin  # noqa: F401
from rivya_api.idempotency import admin as _idempotency_admin  # noqa: F401
from rivya_api.keys import admin as keys_admin  # noqa: F401
