"""Rivya's public API: keys, authentication, catalog, generations, files, chat, OpenAPI."""

__version__ = "0.1.0"
