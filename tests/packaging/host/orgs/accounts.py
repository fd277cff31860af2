"""RIVYA_API["ACCOUNT_FOR_USER"]: a user acts as the first organisation they belong to."""

from django.core.exceptions import PermissionDenied


def organization_for_user(user):
    organization = user.organizations.order_by("pk").first()
    if organization is None:
        raise PermissionDenied("You belong to no organisation.")
    return organization
