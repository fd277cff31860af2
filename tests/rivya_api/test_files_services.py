"""Files services and selectors: sniffing, decoding, limits, signing, deletion and expiry."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from rivya_api.files.exceptions import (
    DownloadExpiredError,
    DownloadSignatureError,
    FileDeletedError,
    FileTooLargeError,
    FileTypeMismatchError,
    FileUnusableError,
    ImageTooLargeError,
    InvalidMediaError,
    InvalidPurposeError,
    NoSuchFileError,
    UnsupportedFileTypeError,
)
from rivya_api.files.media import sniff
from rivya_api.files.models import File
from rivya_api.files.selectors import (
    file_download_url,
    file_download_verify,
    file_get_for_account,
    file_get_signed,
    file_get_usable,
    file_list_for_account,
    file_open,
)
from rivya_api.files.services import (
    clean_filename,
    file_create,
    file_delete,
    file_expire_due,
    file_store,
    file_store_sweep,
)
from tests import media
from tests.rivya_api.files_fixtures import stored_files

pytestmark = pytest.mark.django_db

ACCEPTED = [
    ("png", media.png, "image", "image/png", (64, 48), None),
    ("jpeg", media.jpeg, "image", "image/jpeg", (64, 48), None),
    ("webp", media.webp, "image", "image/webp", (64, 48), None),
    ("gif", media.gif, "image", "image/gif", (40, 30), None),
    ("wav", media.wav, "audio", "audio/wav", None, 0.5),
    ("mp3", media.mp3, "audio", "audio/mpeg", None, 0.5),
    ("ogg_opus", media.ogg_opus, "audio", "audio/ogg", None, 0.5),
    ("mp4", media.mp4, "video", "video/mp4", (64, 48), 1.0),
    ("webm", media.webm, "video", "video/webm", (64, 48), 1.0),
]


@pytest.mark.parametrize(
    ("name", "make", "kind", "content_type", "size", "duration"), ACCEPTED, ids=[a[0] for a in ACCEPTED]
)
def test_each_accepted_type_is_stored_with_what_decoding_found(
    account, media_root, name, make, kind, content_type, size, duration
):
    data = make()
    file = file_create(account=account, content=data, filename=f"upload.{name}", purpose="reference")
    assert file.public_id.startswith("file_")
    assert (file.kind, file.content_type, file.size) == (kind, content_type, len(data))
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert (file.width, file.height) == (size or (None, None))
    if duration is None:
        assert file.duration is None
    else:
        assert file.duration == pytest.approx(duration, abs=0.1)
    with file_open(file) as stream:
        assert stream.read() == data
    assert len(stored_files(media_root)) == 1


def test_uploaded_file_objects_work_like_bytes(account):
    upload = SimpleUploadedFile("photo.png", media.png(), content_type="image/png")
    file = file_create(account=account, content=upload, filename=upload.name, purpose="chat_attachment")
    assert (file.filename, file.purpose, file.content_type) == ("photo.png", "chat_attachment", "image/png")


def test_type_comes_from_the_bytes_not_the_filename(account):
    file = file_create(account=account, content=media.png(), filename="song.mp3", purpose="reference")
    assert file.content_type == "image/png"
    assert file.filename == "song.mp3"


@pytest.mark.parametrize(
    "data",
    [
        b"<html><script>alert(1)</script></html>",
        b"%PDF-1.7 not a picture",
        b"just some text pretending to be a png",
        b"RIFF\x00\x00\x00\x00AVI LIST",
    ],
    ids=["html", "pdf", "text", "avi"],
)
def test_content_of_no_accepted_type_is_refused_whatever_its_name(account, media_root, data):
    with pytest.raises(UnsupportedFileTypeError):
        file_create(account=account, content=data, filename="picture.png", purpose="reference")
    assert stored_files(media_root) == []
    assert not File.objects.exists()


@pytest.mark.parametrize("make", [media.png, media.jpeg, media.webp, media.gif], ids=["png", "jpeg", "webp", "gif"])
def test_truncated_images_are_refused(account, make):
    data = make((200, 150)) if make is not media.gif else make()
    with pytest.raises(InvalidMediaError):
        file_create(account=account, content=data[: len(data) * 2 // 3], filename="cut.img", purpose="reference")


def test_decompression_bomb_is_refused_before_decoding(account):
    bomb = media.bomb_png()
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError):
        file_create(account=account, content=bomb, filename="bomb.png", purpose="reference")


def test_image_over_the_pixel_limit_is_refused(account, rivya_settings):
    # Under Pillow's own bomb threshold, over ours: our limit is what refuses it.
    rivya_settings("RIVYA_API", FILE_IMAGE_MAX_PIXELS=64 * 48 - 1)
    with pytest.raises(ImageTooLargeError):
        file_create(account=account, content=media.png((64, 48)), filename="big.png", purpose="reference")
    rivya_settings("RIVYA_API", FILE_IMAGE_MAX_PIXELS=64 * 48)
    file_create(account=account, content=media.png((64, 48)), filename="ok.png", purpose="reference")


def test_too_many_animation_frames_are_refused(account, rivya_settings):
    rivya_settings("RIVYA_API", FILE_IMAGE_MAX_FRAMES=2)
    with pytest.raises(ImageTooLargeError):
        file_create(account=account, content=media.gif(frames=3), filename="anim.gif", purpose="reference")


@pytest.mark.parametrize(
    "data",
    [media.undecodable_wav(), media.undecodable_mp3(), b"OggS" + bytes(2000)],
    ids=["wav", "mp3", "ogg"],
)
def test_undecodable_audio_is_refused(account, data):
    with pytest.raises(InvalidMediaError):
        file_create(account=account, content=data, filename="voice.wav", purpose="reference")


@pytest.mark.parametrize("make", [media.mp4, media.ogg_opus], ids=["mp4", "ogg"])
def test_truncated_containers_are_refused(account, make):
    data = make()
    with pytest.raises(InvalidMediaError):
        file_create(account=account, content=data[: len(data) // 2], filename="cut", purpose="reference")


def test_mp4_without_video_is_not_a_video(account):
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        container.add_stream("aac", rate=44100)  # an audio-only MP4 (what .m4a files are)
    with pytest.raises((InvalidMediaError, UnsupportedFileTypeError)):
        file_create(account=account, content=buffer.getvalue(), filename="clip.mp4", purpose="reference")


def test_size_limit_is_per_kind(account, media_root, rivya_settings):
    rivya_settings("RIVYA_API", FILE_MAX_BYTES={"image": 100})
    with pytest.raises(FileTooLargeError):
        file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    # Other kinds keep their default limits.
    file_create(account=account, content=media.wav(), filename="a.wav", purpose="reference")
    assert len(stored_files(media_root)) == 1


def test_purpose_must_be_known_and_fit_the_kind(account):
    with pytest.raises(InvalidPurposeError) as raised:
        file_create(account=account, content=media.png(), filename="a.png", purpose="fine-tune")
    assert raised.value.param == "purpose"
    with pytest.raises(UnsupportedFileTypeError):
        file_create(account=account, content=media.wav(), filename="a.wav", purpose="chat_attachment")
    output = file_create(account=account, content=media.wav(), filename="out.wav", purpose="generation_output")
    assert output.purpose == "generation_output"


def test_expiry_follows_the_purposes_retention(account, rivya_settings):
    rivya_settings("RIVYA_API", FILE_RETENTION_SECONDS={"reference": 60, "generation_output": 3600})
    now = timezone.now()
    reference = file_create(account=account, content=media.png(), filename="a.png", purpose="reference", now=now)
    output = file_create(account=account, content=media.png(), filename="b.png", purpose="generation_output", now=now)
    assert reference.expires_at == now + timedelta(seconds=60)
    assert output.expires_at == now + timedelta(seconds=3600)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("bad\x00name\r\n.png", "badname.png"),
        ("", "file"),
        ("x" * 300 + ".png", "x" * 251 + ".png"),
    ],
)
def test_filenames_are_cleaned(given, kept):
    assert clean_filename(given) == kept


def test_sniffing_reads_magic_bytes_only():
    assert sniff(media.png()[:16]).name == "png"
    assert sniff(media.webm()[:64]).name == "webm"
    assert sniff(b"\xff\xf1\x50\x80") is None  # ADTS AAC frame, not MP3
    assert sniff(b"\x00\x00\x00\x18ftypheic") is None  # HEIC still image, not MP4


# --- account scope -------------------------------------------------------------------------------


def test_another_accounts_file_is_not_found(account, make_account):
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    other = make_account()
    assert file_get_for_account(account=account, file_id=file.public_id) == file
    with pytest.raises(NoSuchFileError):
        file_get_for_account(account=other, file_id=file.public_id)
    with pytest.raises(NoSuchFileError) as raised:
        file_get_usable(account=other, file_id=file.public_id, param="input.reference_image")
    assert raised.value.param == "input.reference_image"
    assert list(file_list_for_account(account=other)) == []


def test_usable_checks_type_and_state(account):
    image = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    assert file_get_usable(account=account, file_id=image.public_id, content_types=["image/png"]) == image
    assert file_get_usable(account=account, file_id=image.public_id, kinds=["image"]) == image
    with pytest.raises(FileTypeMismatchError):
        file_get_usable(account=account, file_id=image.public_id, content_types=["audio/wav"])
    with pytest.raises(FileTypeMismatchError):
        file_get_usable(account=account, file_id=image.public_id, kinds=["video"])
    file_delete(file=image)
    with pytest.raises(FileUnusableError):
        file_get_usable(account=account, file_id=image.public_id)


# --- signed URLs ---------------------------------------------------------------------------------


def _link(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    file_id = parts.path.split("/")[-2]
    return file_id, query["expires"][0], query["signature"][0]


def test_download_url_is_absolute_signed_and_fresh_each_time(account, rivya_settings):
    rivya_settings("RIVYA_API", PUBLIC_BASE_URL="https://api.example.com/", FILE_URL_TTL_SECONDS=600)
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    now = timezone.now()
    first = file_download_url(file, now=now)
    later = file_download_url(file, now=now + timedelta(seconds=5))
    assert first.startswith(f"https://api.example.com/api/v1/files/{file.public_id}/content?")
    assert first != later
    file_id, expires, signature = _link(first)
    assert file_id == file.public_id
    assert int(expires) == int((now + timedelta(seconds=600)).timestamp())
    file_download_verify(file_id=file_id, expires=expires, signature=signature, now=now)
    assert file_get_signed(file_id=file_id, expires=expires, signature=signature, now=now) == file


def test_download_url_uses_the_request_origin_without_a_public_base_url(account, rf, rivya_settings, settings):
    rivya_settings("RIVYA_API", PUBLIC_BASE_URL="")
    settings.ALLOWED_HOSTS = ["rivya.test"]
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    request = rf.get("/api/v1/files", HTTP_HOST="rivya.test:8443", secure=True)
    assert file_download_url(file, request).startswith(f"https://rivya.test:8443/api/v1/files/{file.public_id}/")


def test_download_url_expires(account):
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    now = timezone.now()
    file_id, expires, signature = _link(file_download_url(file, now=now))
    file_download_verify(file_id=file_id, expires=expires, signature=signature, now=now + timedelta(seconds=3599))
    with pytest.raises(DownloadExpiredError):
        file_download_verify(file_id=file_id, expires=expires, signature=signature, now=now + timedelta(seconds=3601))


def test_download_url_never_outlives_the_file(account):
    now = timezone.now()
    file = file_create(
        account=account,
        content=media.png(),
        filename="a.png",
        purpose="reference",
        now=now,
        expires_at=now + timedelta(seconds=30),
    )
    _, expires, _ = _link(file_download_url(file, now=now))
    assert int(expires) == int((now + timedelta(seconds=30)).timestamp())
    assert file_download_url(file, now=now + timedelta(seconds=31)) is None


def test_tampered_links_are_refused(account, settings):
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    other = file_create(account=account, content=media.png(), filename="b.png", purpose="reference")
    file_id, expires, signature = _link(file_download_url(file))
    tampered = [
        (file_id, expires, signature[:-1] + ("A" if signature[-1] != "A" else "B")),  # signature edited
        (file_id, str(int(expires) + 86400), signature),  # expiry pushed back: tampered, not "expired"
        (other.public_id, expires, signature),  # signature moved to another file
        (file_id, expires, ""),
        (file_id, "soon", signature),
    ]
    for link in tampered:
        with pytest.raises(DownloadSignatureError) as raised:
            file_download_verify(file_id=link[0], expires=link[1], signature=link[2])
        assert not isinstance(raised.value, DownloadExpiredError)
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789-abcdefghijklmnop"
    with pytest.raises(DownloadSignatureError):
        file_download_verify(file_id=file_id, expires=expires, signature=signature)


def test_links_survive_a_secret_key_rotation(account, settings):
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    file_id, expires, signature = _link(file_download_url(file))
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
    file_download_verify(file_id=file_id, expires=expires, signature=signature)


# --- deletion and expiry -------------------------------------------------------------------------


def test_delete_removes_the_bytes_after_commit_and_keeps_the_record(
    account, media_root, django_capture_on_commit_callbacks
):
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    assert len(stored_files(media_root)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        deleted = file_delete(file=file)
    assert deleted.deleted_at is not None
    assert stored_files(media_root) == []
    file.refresh_from_db()
    assert file.storage_name == ""
    assert file.is_deleted()
    assert file_download_url(file) is None
    with pytest.raises(FileDeletedError):
        file_open(file)
    # Deleting again is a no-op that keeps the first deletion time.
    with django_capture_on_commit_callbacks(execute=True):
        again = file_delete(file=file)
    assert again.deleted_at == deleted.deleted_at
    assert file_get_for_account(account=account, file_id=file.public_id).is_deleted()
    assert list(file_list_for_account(account=account)) == []
    assert list(file_list_for_account(account=account, include_deleted=True)) == [file]


def test_expiry_sweep_deletes_only_expired_files(account, media_root):
    now = timezone.now()
    old = file_create(account=account, content=media.png(), filename="old.png", purpose="reference", expires_at=now)
    fresh = file_create(account=account, content=media.wav(), filename="new.wav", purpose="reference")
    assert len(stored_files(media_root)) == 2
    assert file_expire_due(now=now + timedelta(seconds=1)) == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.deleted_at is not None
    assert old.storage_name == ""
    assert fresh.deleted_at is None
    assert fresh.storage_name
    assert [p.suffix for p in stored_files(media_root)] == [".wav"]
    assert file_expire_due(now=now + timedelta(seconds=2)) == 0


def test_expiry_sweep_retries_bytes_left_by_a_failed_purge(account, media_root):
    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    # A deletion whose after-commit purge never ran (process died): the sweep finishes it.
    File.objects.filter(pk=file.pk).update(deleted_at=timezone.now())
    assert file_expire_due() == 1
    assert stored_files(media_root) == []


def test_expiry_task_is_scheduled():
    from django.conf import settings

    from config.celery import app

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "rivya_api.files.tasks.file_expire_due" in tasks
    # What beat and the in-process runner do before they look tasks up by name.
    app.loader.import_default_modules()
    assert "rivya_api.files.tasks.file_expire_due" in app.tasks


# --- generated outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "extra"),
    [
        ("rivya-image-1", {}),
        ("rivya-image-1", {"format": "webp"}),
        ("rivya-audio-1", {}),
        ("rivya-audio-1", {"format": "ogg"}),
        ("rivya-video-1", {"duration": 1}),
    ],
)
def test_local_models_outputs_pass_the_same_checks_as_uploads(account, model_id, extra):
    from rivya_api.catalog.selectors import catalog_model_get, catalog_provider, catalog_validate_input

    model = catalog_model_get(model_id)  # the reference catalog lists every local media model
    params = catalog_validate_input(model, {"prompt": "a red fox at dawn", **extra})
    for output in catalog_provider(model).run(input=params):
        file = file_create(account=account, content=output.data, filename=output.filename, purpose="generation_output")
        assert file.content_type == output.content_type
        assert file.kind == model.kind


def test_the_store_sweep_removes_only_bytes_no_row_names(account, media_root):
    kept, orphan = (
        file_store(account=account, content=media.png(), filename="a.png", purpose="generation_output", name_prefix=p)
        for p in ("gen/task_1/1", "gen/task_1/1")
    )
    kept.save(force_insert=True)
    other = file_create(account=account, content=media.png(), filename="b.png", purpose="reference")
    assert len(stored_files(media_root)) == 3
    assert file_store_sweep(name_prefix="gen/task_1") == 1
    assert file_store_sweep(name_prefix="gen/missing") == 0
    names = {str(path.relative_to(media_root)) for path in stored_files(media_root)}
    assert names == {kept.storage_name, other.storage_name}
    assert orphan.storage_name not in names
