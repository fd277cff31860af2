"""The host's hooks: a user acts as the organisation they own (``ACCOUNT_FOR_USER``), and a
suspended organisation is disabled (``ACCOUNT_IS_ACTIVE``)."""

from tests.orghost.models import Organization


def organization_for_user(user: object) -> Organization:
    organization, _ = Organization.objects.get_or_create(owner=user, defaults={"name": str(user)})
    return organization


def organization_is_active(organization: Organization) -> bool:
    """The host's ``ACCOUNT_IS_ACTIVE``: a suspended organisation's keys stop (saving it tells Rivya)."""
    return not organization.suspended
