"""The host's own account model: an organisation with an owner."""

from django.conf import settings
from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=100)
    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True)
    # The host's own word for a disabled account (its ACCOUNT_IS_ACTIVE hook reads it).
    suspended = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name
