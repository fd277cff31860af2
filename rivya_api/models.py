"""Models of rivya_api."""
