"""Management commands of rivya_billing."""
