"""Reading files: lookups scoped to an account, signed download URLs, opening bytes.

    file_list_for_account(account=, purpose=None, include_deleted=False) -> QuerySet[File]
    file_get_for_account(account=, file_id=, param=…)  -> File (any state) or NoSuchFileError
    file_get_usable(account=, file_id=, content_types=None, kinds=None, param=…) -> File with bytes
    file_download_url(file, request=None)               -> absolute signed URL, or None once deleted
    file_download_verify(file_id=, expires=, signature=) -> None, or a DownloadSignatureError
    file_get_signed(file_id=, expires=, signature=)      -> File named by a genuine, unexpired link
    file_open(file)                                      -> a readable binary stream of the bytes

Another account's file id is always ``NoSuchFileError`` (a 404), never a
different answer, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import IO, Any
from urllib.parse import urlencode

from django.core import signing
from django.core.files.storage import Storage, storages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from rivya_api.common.origin import absolute_url
from rivya_api.conf import api_settings
from rivya_api.files.exceptions import (
    DownloadExpiredError,
    DownloadSignatureError,
    FileDeletedError,
    FileTypeMismatchError,
    FileUnusableError,
    NoSuchFileError,
)
from rivya_api.files.models import File

__all__ = [
    "file_download_url",
    "file_download_verify",
    "file_get_for_account",
    "file_get_signed",
    "file_get_usable",
    "file_list_for_account",
    "file_open",
    "file_storage",
]

# Scopes the signature to download links: a value signed elsewhere with the same
# SECRET_KEY is never a valid download signature.
DOWNLOAD_SALT = "rivya_api.files.download"


def file_storage() -> Storage:
    """The storage holding file bytes (``RIVYA_API["FILE_STORAGE"]`` names a ``STORAGES`` alias)."""
    return storages[api_settings.FILE_STORAGE]


def file_list_for_account(*, account: Any, purpose: str | None = None, include_deleted: bool = False) -> QuerySet:
    """The account's files, newest first; deleted and expired ones only when asked."""
    files = File.objects.filter(account=account)
    if purpose:
        files = files.filter(purpose=purpose)
    if not include_deleted:
        files = files.filter(deleted_at__isnull=True, expires_at__gt=timezone.now())
    return files.order_by("-created_at", "-pk")


def file_get_for_account(*, account: Any, file_id: str, param: str | None = "file_id") -> File:
    """The account's file with this public id, deleted or not; ``NoSuchFileError`` otherwise."""
    file = File.objects.filter(account=account, public_id=file_id).first() if isinstance(file_id, str) else None
    if file is None:
        raise NoSuchFileError(f"No such file: {file_id!r}.", param=param)
    return file


def file_get_usable(
    *,
    account: Any,
    file_id: str,
    content_types: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    param: str | None = "file_id",
) -> File:
    """A file the account may use as input: its own, bytes present, of an accepted type.

    ``content_types`` / ``kinds`` (empty or None: any) restrict the type.
    Raises ``NoSuchFileError`` (404), ``FileUnusableError`` (deleted or expired)
    or ``FileTypeMismatchError``, each with ``param``.
    """
    file = file_get_for_account(account=account, file_id=file_id, param=param)
    if file.is_deleted():
        raise FileUnusableError(f"File {file_id} was deleted or has expired.", param=param)
    content_types = list(content_types or [])
    kinds = list(kinds or [])
    if (content_types and file.content_type not in content_types) or (kinds and file.kind not in kinds):
        accepted = ", ".join(content_types or kinds)
        raise FileTypeMismatchError(
            f"File {file_id} is {file.content_type}; this parameter accepts {accepted}.", param=param
        )
    return file


def _signature(file_id: str, expires: int) -> str:
    return signing.Signer(salt=DOWNLOAD_SALT).signature(f"{file_id}:{expires}")


def file_download_url(file: File, request: Any = None, *, now: datetime | None = None) -> str | None:
    """An absolute, signed download URL valid for ``FILE_URL_TTL_SECONDS`` (never past the file's expiry).

    Every call signs anew, so each GET hands out a fresh link. ``None`` once the
    file is deleted or expired. The origin is ``RIVYA_PUBLIC_BASE_URL`` when set,
    else the request's. The signature covers the file id and the expiry, with
    the project's ``SECRET_KEY`` (and its fallbacks, so keys can be rotated).
    """
    now = now or timezone.now()
    if file.is_deleted(now):
        return None
    until = min(now + timedelta(seconds=int(api_settings.FILE_URL_TTL_SECONDS)), file.expires_at)
    expires = int(until.timestamp())
    path = reverse("rivya_api:file-content", args=[file.public_id])
    query = urlencode({"expires": expires, "signature": _signature(file.public_id, expires)})
    return absolute_url(f"{path}?{query}", request)


def file_download_verify(*, file_id: str, expires: Any, signature: Any, now: datetime | None = None) -> None:
    """Raise ``DownloadSignatureError`` unless the signature is genuine, and ``DownloadExpiredError`` if past.

    The signature is checked before the expiry, so a link whose expiry was
    edited is reported as tampered, not as expired.
    """
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        raise DownloadSignatureError("The download link is malformed.") from None
    if not isinstance(signature, str) or not signature:
        raise DownloadSignatureError("The download link has no signature.")
    signer = signing.Signer(salt=DOWNLOAD_SALT)
    value = f"{file_id}:{expires_at}"
    keys = [signer.key, *signer.fallback_keys]
    if not any(constant_time_compare(signer.signature(value, key=key), signature) for key in keys):
        raise DownloadSignatureError("The download link's signature is not valid.")
    if expires_at <= int((now or timezone.now()).timestamp()):
        raise DownloadExpiredError("The download link has expired; fetch the file again for a fresh one.")


def file_get_signed(*, file_id: str, expires: Any, signature: Any, now: datetime | None = None) -> File:
    """The file a signed download link names (any account: the signature is the permission)."""
    file_download_verify(file_id=file_id, expires=expires, signature=signature, now=now)
    file = File.objects.filter(public_id=file_id).first()
    if file is None:
        raise NoSuchFileError(f"No such file: {file_id!r}.")
    return file


def file_open(file: File) -> IO[bytes]:
    """The file's bytes as a readable stream (the caller closes it); ``FileDeletedError`` once removed."""
    if file.is_deleted() or not file.storage_name:
        raise FileDeletedError(f"File {file.public_id} was deleted or has expired.")
    return file_storage().open(file.storage_name, "rb")
