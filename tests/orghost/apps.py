from django.apps import AppConfig


class OrgHostConfig(AppConfig):
    name = "tests.orghost"
    label = "orghost"
    default_auto_field = "django.db.models.BigAutoField"
