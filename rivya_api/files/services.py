"""Writing files: create (sniff, decode, hash, store), delete, expire.

    file_create(account=, content=, filename=, purpose=, expires_at=None) -> File
    file_delete(file=)                       -> File (deleted_at set, bytes removed after commit)
    file_expire_due(now=None, batch_size=…)  -> number of files whose bytes were removed
    file_purge(file_pk=)                     -> bool (bytes of a deleted file removed)
    file_store(...)                          -> File, checked and stored but unsaved (no row)
    file_store_sweep(name_prefix=)           -> number of stored bytes under the prefix with no row

The HTTP upload and the generation runner check and store bytes the same way
(``file_store``): a generated output passes exactly the checks an upload does.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import IO, Any

from django.core.files.base import File as DjangoFile
from django.db import transaction
from django.utils import timezone

from rivya_api import metrics
from rivya_api.conf import api_settings
from rivya_api.files.exceptions import (
    FileTooLargeError,
    InvalidPurposeError,
    UnsupportedFileTypeError,
)
from rivya_api.files.media import HEAD_BYTES, KINDS, MediaInfo, inspect_media, sniff
from rivya_api.files.models import File
from rivya_api.files.selectors import file_storage
from rivya_api.ids import public_id

logger = logging.getLogger("rivya_api.files")

__all__ = [
    "UPLOAD_PURPOSES",
    "UPLOAD_PURPOSE_VALUES",
    "file_create",
    "file_delete",
    "file_expire_due",
    "file_purge",
    "file_store",
    "file_store_sweep",
]

# What a client may upload; generation_output is reserved to the API itself.
UPLOAD_PURPOSES = (File.Purpose.REFERENCE, File.Purpose.CHAT_ATTACHMENT)
UPLOAD_PURPOSE_VALUES = [purpose.value for purpose in UPLOAD_PURPOSES]
_DEFAULT_MAX_BYTES = {"image": 20 * 1024 * 1024, "audio": 25 * 1024 * 1024, "video": 60 * 1024 * 1024}
_HASH_CHUNK = 1024 * 1024


def file_max_bytes(kind: str) -> int:
    """The size limit of one kind (``RIVYA_API["FILE_MAX_BYTES"]``, missing keys at their defaults)."""
    return int({**_DEFAULT_MAX_BYTES, **(api_settings.FILE_MAX_BYTES or {})}[kind])


def media_limits() -> dict[str, int]:
    return {
        "image_max_pixels": int(api_settings.FILE_IMAGE_MAX_PIXELS),
        "image_max_frames": int(api_settings.FILE_IMAGE_MAX_FRAMES),
        "image_max_total_pixels": int(api_settings.FILE_IMAGE_MAX_TOTAL_PIXELS),
        "av_decode_frames": int(api_settings.FILE_AV_DECODE_FRAMES),
    }


def clean_filename(name: Any, default: str = "file") -> str:
    """A display name: the last path component, no control characters, at most 255 characters."""
    name = os.path.basename(str(name or "").replace("\\", "/"))
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if not name:
        return default
    if len(name) > 255:
        stem, dot, extension = name.rpartition(".")
        name = (stem[: 254 - len(extension)] + dot + extension) if dot and len(extension) < 16 else name[:255]
    return name


def _as_stream(content: bytes | bytearray | memoryview | IO[bytes] | DjangoFile) -> tuple[IO[bytes], int]:
    if isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
        return io.BytesIO(data), len(data)
    stream = content
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return stream, size


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def _inspect(stream: IO[bytes], size: int, purpose: str) -> MediaInfo:
    largest = max(file_max_bytes(kind) for kind in KINDS)
    if size > largest:
        # Refuse before even sniffing: nothing this large is accepted whatever it is.
        raise FileTooLargeError(f"The file is {size} bytes; no file over {largest} bytes is accepted.")
    if size == 0:
        raise UnsupportedFileTypeError("The file is empty.")
    stream.seek(0)
    media_type = sniff(stream.read(HEAD_BYTES))
    if media_type is None:
        raise UnsupportedFileTypeError(
            "The content is not an accepted type (PNG, JPEG, WebP, GIF, WAV, MP3, OGG, MP4, WebM). "
            "The type is read from the bytes, not from the filename or Content-Type."
        )
    limit = file_max_bytes(media_type.kind)
    if size > limit:
        raise FileTooLargeError(
            f"The {media_type.kind} is {size} bytes; {media_type.kind} files are limited to {limit}."
        )
    allowed = (api_settings.FILE_PURPOSE_KINDS or {}).get(purpose, KINDS)
    if media_type.kind not in allowed:
        raise UnsupportedFileTypeError(
            f"A {purpose} file must be {' or '.join(allowed)}; this is {media_type.content_type}."
        )
    return inspect_media(stream, media_type, media_limits())


def file_create(
    *,
    account: Any,
    content: bytes | IO[bytes] | DjangoFile,
    filename: str,
    purpose: str,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    on_created: Callable[[File], None] | None = None,
) -> File:
    """Check, hash and store ``content`` as a new file of ``account``.

    The type is sniffed from the bytes and proven by decoding (never taken from
    ``filename``); a refusal raises ``FileTooLargeError``,
    ``UnsupportedFileTypeError``, ``InvalidMediaError`` / ``ImageTooLargeError`` or
    ``InvalidPurposeError``, before anything is stored. ``expires_at`` defaults to
    now plus the purpose's ``FILE_RETENTION_SECONDS``.

    The bytes are written to storage first and the row inserted after (one
    statement, no long transaction around the upload); if the insert fails the
    bytes are removed again. Called inside a transaction that later rolls back,
    the bytes stay behind as an orphan in storage, never as a visible file.
    ``on_created(file)`` runs in the insert's transaction (the API names the file
    on the request's Idempotency-Key there); raising from it undoes the insert.
    """
    file = file_store(
        account=account, content=content, filename=filename, purpose=purpose, expires_at=expires_at, now=now
    )
    try:
        with transaction.atomic():
            file.save(force_insert=True)
            if on_created is not None:
                on_created(file)
    except BaseException:
        file_storage().delete(file.storage_name)
        raise
    logger.info("Stored %s (%s, %s bytes) for purpose %s", file.public_id, file.content_type, file.size, purpose)
    return file


def file_store(
    *,
    account: Any,
    content: bytes | IO[bytes] | DjangoFile,
    filename: str,
    purpose: str,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    name_prefix: str = "",
) -> File:
    """Check, hash and store ``content``; return its File unsaved (no row yet, no transaction).

    The caller inserts the row (e.g. ``File.objects.bulk_create``) or, if it never does,
    removes ``file.storage_name``. ``name_prefix`` (a path under the storage prefix) lets a
    caller find bytes it stored but never committed (see ``file_store_sweep``).
    """
    if purpose not in File.Purpose.values:
        raise InvalidPurposeError(f"purpose must be one of {', '.join(File.Purpose.values)}.")
    stream, size = _as_stream(content)
    info = _inspect(stream, size, purpose)
    sha256 = _sha256(stream)
    now = now or timezone.now()
    if expires_at is None:
        retention = int((api_settings.FILE_RETENTION_SECONDS or {}).get(purpose, 30 * 86400))
        expires_at = now + timedelta(seconds=retention)
    file_id = public_id("file")
    folder = name_prefix.strip("/") or file_id[5:7]
    name = f"{api_settings.FILE_STORAGE_PREFIX.strip('/')}/{folder}/{file_id}.{info.media_type.extension}"
    stream.seek(0)
    stored_name = file_storage().save(name, DjangoFile(stream, name=name))
    return File(
        public_id=file_id,
        account=account,
        purpose=purpose,
        kind=info.kind,
        filename=clean_filename(filename, default=f"file.{info.media_type.extension}"),
        content_type=info.content_type,
        size=size,
        sha256=sha256,
        width=info.width,
        height=info.height,
        duration=info.duration,
        storage_name=stored_name,
        created_at=now,
        expires_at=expires_at,
    )


def file_store_sweep(*, name_prefix: str) -> int:
    """Remove the stored bytes under ``name_prefix`` that no File row names; return how many.

    For bytes ``file_store`` wrote whose row never committed (the worker was killed before
    its commit): the caller sweeps a prefix once nothing can commit rows under it any more.
    """
    storage = file_storage()
    names = list(_stored_names(storage, f"{api_settings.FILE_STORAGE_PREFIX.strip('/')}/{name_prefix.strip('/')}"))
    if not names:
        return 0
    # Looked up by public id (indexed; file_store names the bytes after it), not by storage_name.
    ids = [name.rsplit("/", 1)[-1].split(".", 1)[0] for name in names]
    known = set(File.objects.filter(public_id__in=ids).values_list("storage_name", flat=True))
    orphans = [name for name in names if name not in known]
    for name in orphans:
        storage.delete(name)
    return len(orphans)


def _stored_names(storage: Any, folder: str) -> Iterator[str]:
    try:
        folders, names = storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        yield f"{folder}/{name}"
    for sub in folders:
        yield from _stored_names(storage, f"{folder}/{sub}")


@transaction.atomic
def file_delete(*, file: File, now: datetime | None = None) -> File:
    """Mark the file deleted (once) and remove its bytes after commit; the record stays.

    Deleting twice is the same as deleting once. If removing the bytes fails,
    the expiry sweep retries it (``file_purge`` picks up every deleted file
    that still has a ``storage_name``).
    """
    locked = File.objects.select_for_update().get(pk=file.pk)
    if locked.deleted_at is None:
        locked.deleted_at = now or timezone.now()
        locked.save(update_fields=["deleted_at"])
    if locked.storage_name:
        pk = locked.pk
        transaction.on_commit(lambda: file_purge(file_pk=pk))
    return locked


def file_purge(*, file_pk: int) -> bool:
    """Remove the bytes of a deleted file and forget their name; False if there was nothing to do."""
    file = File.objects.filter(pk=file_pk, deleted_at__isnull=False).exclude(storage_name="").first()
    if file is None:
        return False
    try:
        file_storage().delete(file.storage_name)
    except Exception:
        logger.exception("Could not remove the bytes of %s; the expiry sweep will retry", file.public_id)
        return False
    # Conditional update: a concurrent purge of the same file changes nothing twice.
    File.objects.filter(pk=file.pk, storage_name=file.storage_name).update(storage_name="")
    return True


def file_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Mark files past ``expires_at`` deleted and remove the bytes of deleted files; returns how many.

    Run periodically (``CELERY_BEAT_SCHEDULE``). Each run handles at most
    ``batch_size`` files, so a backlog drains over several runs without one long
    transaction; concurrent runs are harmless (every write is conditional).
    """
    now = now or timezone.now()
    due = list(
        File.objects.filter(deleted_at__isnull=True, expires_at__lte=now).values_list("pk", flat=True)[:batch_size]
    )
    if due:
        File.objects.filter(pk__in=due, deleted_at__isnull=True).update(deleted_at=now)
    leftover = File.objects.filter(deleted_at__isnull=False).exclude(storage_name="").order_by("deleted_at")
    purged = 0
    for pk in list(leftover.values_list("pk", flat=True)[:batch_size]):
        try:
            purged += file_purge(file_pk=pk)
        except Exception:  # one file must not keep the sweep from the others (tried again next run)
            logger.exception("Could not purge file %s; moving on to the next", pk)
            metrics.background_row_failed(job="file_expire_due")
    if purged:
        logger.info("Removed the bytes of %s deleted or expired files", purged)
    return purged
