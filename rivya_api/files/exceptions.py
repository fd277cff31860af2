"""Errors of the Files resource, mapped to HTTP once in ``rivya_api.common.errors.DOMAIN_ERRORS``.

They carry ``param`` (the request field at fault) so the error shape can name
it; other packages that take file ids in their input pass their own ``param``
(e.g. ``input.reference_image``) to the selectors.
"""

from __future__ import annotations

from rivya_core.exceptions import RivyaError


class FileError(RivyaError):
    """Root of every Files error."""

    param: str | None = "file"


class NoSuchFileError(FileError):
    """No file with this id belongs to the account (another account's file is the same 404)."""


class FileDeletedError(FileError):
    """The file was deleted or has expired: its bytes are gone."""


class FileUnusableError(FileError):
    """A file referenced as input cannot be used (deleted or expired)."""


class FileTypeMismatchError(FileUnusableError):
    """A file referenced as input is not of a type that parameter accepts."""


class UnsupportedFileTypeError(FileError):
    """The content is not one of the accepted formats (or not one the purpose accepts)."""


class InvalidMediaError(FileError):
    """The content announces an accepted format but does not decode as one."""


class ImageTooLargeError(InvalidMediaError):
    """The image's dimensions or frame count are over the limits (e.g. a decompression bomb)."""


class FileTooLargeError(FileError):
    """The content is over the size limit of its kind."""


class InvalidPurposeError(FileError):
    """The purpose is not one a file can be created with here."""

    param = "purpose"


class DownloadSignatureError(FileError):
    """A download URL's signature does not match its file and expiry (tampered or foreign)."""

    param = "signature"


class DownloadExpiredError(DownloadSignatureError):
    """A download URL's signature is genuine but its expiry has passed."""

    param = "expires"
