"""The provider interface: what a generation model's backend must do.

A *provider* turns a task's validated input (and the files it references) into
output files. The model catalog (``RIVYA_API["MODELS"]``) names each model's
provider class by dotted path together with an ``options`` dict; the
generation runner builds one instance per job and calls :meth:`Provider.run`::

    provider = provider_class(options)            # options from the catalog entry
    outputs = provider.run(
        input={"prompt": "a red fox at dawn", "reference_image": "file_…"},
        input_files={"reference_image": InputFile.from_bytes(data, content_type="image/png")},
        progress=lambda pct: ...,                 # 0–100, non-decreasing
        deadline=time.monotonic() + 60,           # or None
    )

Providers know nothing of billing, tasks, storage or webhooks. They only
produce bytes or raise a :class:`ProviderError` subclass whose ``code`` and
message are safe to show to an API client: they never name an upstream
service, its model ids or its URLs. Anything else a provider raises is a bug
and is treated by the runner as an internal failure.

Cancellation is cooperative: the runner's ``progress`` callback may raise
(for instance when the task was canceled); providers call ``progress`` often
enough and let whatever it raises propagate untouched.

Catalog contract (for whoever declares models):

* ``Provider.kind`` — ``"image"``, ``"video"`` or ``"audio"``.
* ``Provider.parameters_schema(options)`` — the JSON Schema (draft 2020-12) of
  ``input``. ``{"prompt": "..."}`` alone is always valid; every other property
  has a ``default`` or is optional by nature (a seed, a file id). Properties that take a Files API id are marked with
  ``"x-rivya-file": {"content_types": [...]}`` (see :func:`file_parameter`);
  :func:`file_parameters` lists them. The runner resolves each such id to an
  :class:`InputFile` in ``input_files`` under the same key (``input`` keeps the id).
* ``Provider.is_configured(options)`` — False when the provider cannot run
  here (e.g. an upstream's base URL or key variable is unset); the catalog
  hides such models.
* ``provider.safe_to_retry`` — True when running the same job twice has no
  effect beyond the result (local providers); the runner may then retry a job
  whose worker died once. Upstream adapters default to False (a retry may be
  billed twice upstream); ``options["safe_to_retry"]`` overrides it.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

import jsonschema

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
]

Kind = Literal["image", "video", "audio"]

# Key marking a schema property as a Files API id (a JSON Schema extension keyword;
# validators ignore it, OpenAPI tools keep ``x-`` keys).
FILE_KEYWORD = "x-rivya-file"

IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp")


# -- errors -------------------------------------------------------------------------------------


class ProviderError(Exception):
    """A generation failed in a way that may be shown to the client.

    ``code`` is stable and public; ``message`` is written for the client and
    never names an upstream, its models or URLs (log those separately).
    ``param`` names the input parameter at fault, when there is one.
    ``retryable`` tells whether the same job might succeed if run again later.
    """

    code: ClassVar[str] = "generation_failed"
    default_message: ClassVar[str] = "The model could not complete this generation."
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        self.message = message or self.default_message
        self.param = param
        super().__init__(self.message)

    def as_dict(self) -> dict[str, str]:
        """The ``error`` object a task shows: ``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses the pipe from a provider's process (rivya_api.generations.isolation) with its param.
        return (_rebuild_error, (type(self), self.message, self.param))


def _rebuild_error(cls: type[ProviderError], message: str, param: str | None) -> ProviderError:
    return cls(message, param=param)


class ProviderTimeoutError(ProviderError):
    """The job ran past its deadline, or the upstream did not answer in time."""

    code = "generation_timeout"
    default_message = "The model did not finish in time."
    retryable = True


class ProviderUnavailableError(ProviderError):
    """The model's backend cannot be reached or refused service (busy, misconfigured, down)."""

    code = "model_unavailable"
    default_message = "The model is temporarily unavailable."
    retryable = True


class ProviderInputError(ProviderError):
    """The input cannot be used: out of range, an unreadable file, or rejected by the model."""

    code = "invalid_input"
    default_message = "The model could not use this input."


class ProviderOutputError(ProviderError):
    """The backend answered, but what it produced is not valid media."""

    code = "invalid_output"
    default_message = "The model produced an invalid result."
    retryable = True


# -- files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """A file referenced by the input: bytes in memory or a local path, plus its content type."""

    content_type: str
    data: bytes | None = None
    path: str | None = None
    filename: str = ""

    def __post_init__(self) -> None:
        if (self.data is None) == (self.path is None):
            raise ValueError("InputFile needs exactly one of data or path")

    @classmethod
    def from_bytes(cls, data: bytes, *, content_type: str, filename: str = "") -> InputFile:
        return cls(content_type=content_type, data=data, filename=filename)

    @classmethod
    def from_path(cls, path: str | Path, *, content_type: str, filename: str = "") -> InputFile:
        return cls(content_type=content_type, path=str(path), filename=filename or Path(path).name)

    def open(self) -> BinaryIO:
        """A readable binary stream of the content (the caller closes it)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return open(self.path, "rb")

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        return Path(self.path).read_bytes()


@dataclass(frozen=True)
class OutputFile:
    """One produced file. ``metadata`` holds facts like ``width``/``height``/``duration_seconds``."""

    filename: str
    content_type: str
    data: bytes
    metadata: dict[str, Any] = field(default_factory=dict)


# -- schema helpers -----------------------------------------------------------------------------


def file_parameter(description: str, *, content_types: tuple[str, ...] = IMAGE_CONTENT_TYPES) -> dict[str, Any]:
    """Schema of a parameter holding a Files API id (``file_…``) of one of ``content_types``."""
    return {
        "type": "string",
        "pattern": "^file_[A-Za-z0-9_-]+$",
        "description": description,
        FILE_KEYWORD: {"content_types": list(content_types)},
    }


def file_parameters(schema: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{parameter: accepted content types}`` for each file parameter of an input schema."""
    found = {}
    for name, prop in (schema.get("properties") or {}).items():
        marker = prop.get(FILE_KEYWORD) if isinstance(prop, Mapping) else None
        if marker is not None:
            found[name] = list(marker.get("content_types") or [])
    return found


# -- progress and deadline ----------------------------------------------------------------------


class ProgressReporter:
    """Wraps the runner's callback: clamps to 0–100, never goes back, skips repeats,
    and raises :class:`ProviderTimeoutError` once ``deadline`` (``time.monotonic()``) has passed.

    Whatever the wrapped callback raises (e.g. a cancellation) propagates.
    """

    def __init__(
        self,
        callback: Callable[[int], None] | None,
        deadline: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self.deadline = deadline
        self._clock = clock
        self.last = -1

    def __call__(self, percent: float) -> None:
        self.check_deadline()
        value = max(0, min(100, int(percent)))
        if value > self.last:
            self.last = value
            if self._callback is not None:
                self._callback(value)

    def remaining(self) -> float:
        """Seconds left before the deadline (``math.inf`` without one)."""
        if self.deadline is None:
            return math.inf
        return self.deadline - self._clock()

    def check_deadline(self) -> None:
        if self.remaining() <= 0:
            raise ProviderTimeoutError()


# -- the interface ------------------------------------------------------------------------------


class Provider:
    """Base class of every generation provider.

    Subclasses set ``kind``, implement :meth:`parameters_schema` and :meth:`generate`,
    and may override :meth:`is_configured` and ``default_safe_to_retry``.
    ``options`` is the catalog entry's ``options`` dict (JSON-like, read-only).
    """

    kind: ClassVar[Kind]
    default_safe_to_retry: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})

    @property
    def safe_to_retry(self) -> bool:
        return bool(self.options.get("safe_to_retry", self.default_safe_to_retry))

    @classmethod
    def parameters_schema(cls, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """JSON Schema of ``input`` for a model using this provider with these options."""
        raise NotImplementedError

    @classmethod
    def is_configured(cls, options: Mapping[str, Any] | None = None) -> bool:
        """Whether this provider can run here with these options (the catalog hides it if not)."""
        return True

    def run(
        self,
        *,
        input: Mapping[str, Any],
        input_files: Mapping[str, InputFile] | None = None,
        progress: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> list[OutputFile]:
        """Produce the outputs for ``input``; raise a :class:`ProviderError` on failure.

        ``input`` is validated again against :meth:`parameters_schema` and
        completed with its defaults (a :class:`ProviderInputError` names the bad
        parameter). ``deadline`` is a ``time.monotonic()`` value; past it the
        provider raises :class:`ProviderTimeoutError`. ``progress`` receives
        non-decreasing integers 0–100, ending with 100 on success.
        """
        params = self.normalize_input(input)
        reporter = ProgressReporter(progress, deadline)
        reporter(0)
        outputs = self.generate(params=params, input_files=dict(input_files or {}), progress=reporter)
        reporter(100)
        return outputs

    def generate(
        self,
        *,
        params: dict[str, Any],
        input_files: dict[str, InputFile],
        progress: ProgressReporter,
    ) -> list[OutputFile]:
        """Subclass hook: ``params`` is validated and has every default filled in."""
        raise NotImplementedError

    def normalize_input(self, input: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``input`` against the schema and fill in top-level defaults."""
        schema = self.parameters_schema(self.options)
        validator = jsonschema.Draft202012Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(dict(input)))
        if error is not None:
            param = _error_param(error)
            raise ProviderInputError(_error_message(error, param), param=param)
        params = copy.deepcopy(dict(input))
        for name, prop in (schema.get("properties") or {}).items():
            if name not in params and "default" in prop:
                params[name] = copy.deepcopy(prop["default"])
        return params


def _error_param(error: jsonschema.ValidationError) -> str | None:
    if error.validator == "required":
        # "'prompt' is a required property": the missing name is the offending parameter.
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        return missing[0] if missing else None
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance or {}) - set((error.schema.get("properties") or {}).keys()))
        return extra[0] if extra else None
    path = [str(part) for part in error.absolute_path]
    return ".".join(path) or None


def _error_message(error: jsonschema.ValidationError, param: str | None) -> str:
    if error.validator == "additionalProperties" and param:
        return f"Unknown parameter: {param}."
    if param:
        return f"Invalid value for {param}: {error.message}."
    return f"Invalid input: {error.message}."
