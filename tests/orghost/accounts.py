"""The host's ``ACCOUNT_FOR_USER`` hook: a user acts as the organisation they own."""

from tests.orghost.models import Organization


def organization_for_user(user: object) -> Organization:
    organization, _ = Organization.objects.get_or_create(owner=user, defaults={"name": str(user)})
    return organization
