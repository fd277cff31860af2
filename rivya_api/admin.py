"""Django admin of rivya_api, one import line per resource sub-package."""
