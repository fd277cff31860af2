"""App config of rivya_api: system checks, event types, metrics hooks and the background mode."""

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class RivyaApiConfig(AppConfig):
    name = "rivya_api"
    verbose_name = "Rivya API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rivya_api import checks  # noqa: F401  (registers system checks)
        from rivya_api.background import configure_background, start_beat_on_first_request
        from rivya_api.catalog import checks as catalog_checks  # noqa: F401
        from rivya_api.common.pool_check import install_on_created
        from rivya_api.conf import api_settings
        from rivya_api.credits.events import register_credits_event_types
        from rivya_api.generations.events import register_generation_event_types
        from rivya_api.keys import schema  # noqa: F401  (registers the bearer scheme with drf-spectacular)
        from rivya_api.keys.limits import register_key_event_types
        from rivya_api.keys.signals import connect_account_signals
        from rivya_api.metrics import connect_celery_signals

        connect_celery_signals()
        connection_created.connect(install_on_created, dispatch_uid="rivya_pool_check")
        connect_account_signals()
        register_generation_event_types()
        register_credits_event_types()
        register_key_event_types()
        own_app = configure_background(api_settings.BACKGROUND)
        if own_app is not None and api_settings.IN_PROCESS_BEAT:
            start_beat_on_first_request(own_app)
