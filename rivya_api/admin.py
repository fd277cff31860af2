"""Django admin of rivya_api, one import line per resource sub-package."""
from rivya_api.chat import admin as _chat_admin  # noqa: F401
