"""Rivya's public API: keys, authentication, catalog, generations, files, chat, OpenAPI."""

from rivya_core import __version__  # the one version source of the distribution

__all__ = ["__version__"]
