"""Settings of a minimal host whose account is ``orghost.Organization``, not the user."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS, RIVYA_API

INSTALLED_APPS = [*INSTALLED_APPS, "tests.orghost"]
RIVYA_ACCOUNT_MODEL = "orghost.Organization"
RIVYA_API = {
    **RIVYA_API,
    "ACCOUNT_FOR_USER": "tests.orghost.accounts.organization_for_user",
    "ACCOUNT_IS_ACTIVE": "tests.orghost.accounts.organization_is_active",
}
