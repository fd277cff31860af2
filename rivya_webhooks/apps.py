"""App config of rivya_webhooks: registers its own event types and system checks."""

from django.apps import AppConfig


class RivyaWebhooksConfig(AppConfig):
    name = "rivya_webhooks"
    verbose_name = "Rivya webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rivya_webhooks import checks  # noqa: F401  (registers system checks)
        from rivya_webhooks.registry import register_builtin_event_types

        register_builtin_event_types()
