from django.apps import AppConfig


class RivyaBillingConfig(AppConfig):
    name = "rivya_billing"
    verbose_name = "Rivya billing"
    default_auto_field = "django.db.models.BigAutoField"
