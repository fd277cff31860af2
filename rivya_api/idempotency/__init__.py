"""Idempotent POSTs: at most one execution per account and ``Idempotency-Key``.

``services`` holds the claim/complete/release protocol (sync, with ``a``-prefixed
async wrappers), ``http`` the request-side helpers (header, fingerprint, replay),
``mixins`` the DRF hook every ``AccountScopedMixin`` view inherits, and
``schema`` the OpenAPI postprocessing hook that documents it on every POST.
"""
