"""Management commands of rivya_api."""
