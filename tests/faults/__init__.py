"""Fault and soak tests against the production stack on a private PostgreSQL and Redis (issue 14)."""
