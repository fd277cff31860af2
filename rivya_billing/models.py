"""Models of rivya_billing."""
