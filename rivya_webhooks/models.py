"""Models of rivya_webhooks."""
