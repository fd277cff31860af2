"""App configuration of rivya_billing (registers its system checks)."""

from django.apps import AppConfig


class RivyaBillingConfig(AppConfig):
    name = "rivya_billing"
    verbose_name = "Rivya billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rivya_billing import checks  # noqa: F401  (registers system checks)
