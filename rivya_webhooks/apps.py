from django.apps import AppConfig


class RivyaWebhooksConfig(AppConfig):
    name = "rivya_webhooks"
    verbose_name = "Rivya webhooks"
    default_auto_field = "django.db.models.BigAutoField"
