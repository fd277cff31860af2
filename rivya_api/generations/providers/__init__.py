"""Generation providers: the interface (``base``), local offline providers and upstream adapters.

The catalog names a provider class by dotted path; :func:`provider_class` loads
one and checks it is a :class:`Provider`. Concrete providers are imported from
their own modules (``local``, ``openai_images``) so that loading one never
imports the others' dependencies.
"""

from __future__ import annotations

from django.utils.module_loading import import_string

from rivya_api.generations.providers.base import (
    InputFile,
    Kind,
    OutputFile,
    ProgressReporter,
    Provider,
    ProviderError,
    ProviderInputError,
    ProviderOutputError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    file_parameter,
    file_parameters,
)

__all__ = [
    "InputFile",
    "Kind",
    "OutputFile",
    "ProgressReporter",
    "Provider",
    "ProviderError",
    "ProviderInputError",
    "ProviderOutputError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "file_parameter",
    "file_parameters",
    "provider_class",
]


def provider_class(path: str) -> type[Provider]:
    """The :class:`Provider` subclass at dotted ``path``; ``ImportError`` or ``TypeError`` if it isn't one."""
    cls = import_string(path)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{path} is not a rivya_api.generations.providers.Provider subclass")
    return cls
