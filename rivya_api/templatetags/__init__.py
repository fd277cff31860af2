"""Template tags of rivya_api's pages."""
