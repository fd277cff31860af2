"""API keys: hashed at rest, shown once, rolled with a grace period, revoked at once.

Public names: ``models.APIKey`` and ``models.APIKeyEvent`` (the audit record),
``services.api_key_create`` / ``api_key_roll`` / ``api_key_revoke``,
``selectors.*``, ``authentication.APIKeyAuthentication`` and
``throttling.APIKeyRateThrottle``.
"""
