"""Plumbing shared by every API resource: errors, request ids, pagination, negotiation."""
