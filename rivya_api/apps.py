from django.apps import AppConfig


class RivyaApiConfig(AppConfig):
    name = "rivya_api"
    verbose_name = "Rivya API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rivya_api import checks  # noqa: F401  (registers system checks)
        from rivya_api.catalog import checks as catalog_checks  # noqa: F401
        from rivya_api.generations.events import register_generation_event_types
        from rivya_api.keys import schema  # noqa: F401  (registers the bearer scheme with drf-spectacular)
        from rivya_api.metrics import connect_celery_signals

        connect_celery_signals()
        register_generation_event_types()
