"""The Files API over HTTP: upload, refusals, signed downloads, the account boundary, deletion, lists."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from rivya_api.files.models import File
from rivya_api.files.selectors import file_download_url
from tests import media
from tests.openapi import assert_matches_openapi
from tests.rivya_api.files_fixtures import stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"PUBLIC_BASE_URL": ""}})]

FILE_KEYS = {
    "id", "object", "filename", "bytes", "content_type", "purpose", "sha256", "width", "height", "duration",
    "created_at", "expires_at", "deleted", "url",
}  # fmt: skip

ACCEPTED = [
    ("png", media.png, "image/png"),
    ("jpeg", media.jpeg, "image/jpeg"),
    ("webp", media.webp, "image/webp"),
    ("gif", media.gif, "image/gif"),
    ("wav", media.wav, "audio/wav"),
    ("mp3", media.mp3, "audio/mpeg"),
    ("ogg", media.ogg_opus, "audio/ogg"),
    ("mp4", media.mp4, "video/mp4"),
    ("webm", media.webm, "video/webm"),
]


def upload(client, data: bytes, name: str = "upload.bin", purpose: str = "reference", content_type: str | None = None):
    part = SimpleUploadedFile(name, data, content_type=content_type or "application/octet-stream")
    return client.post("/api/v1/files", {"file": part, "purpose": purpose}, format="multipart")


def assert_error(response, status: int, code: str, param: str | None = "file") -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param", "request_id"}
    assert (error["code"], error["param"]) == (code, param)
    assert error["request_id"] == response["X-Request-Id"]
    return error


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.parametrize(("name", "make", "content_type"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_upload_each_accepted_type_and_download_it_by_its_signed_url(api_client, client, name, make, content_type):
    data = make()
    response = upload(api_client, data, f"my.{name}")
    assert response.status_code == 201, response.content
    assert_matches_openapi(response, "post", "/api/v1/files")
    body = response.json()
    assert set(body) == FILE_KEYS
    assert body["id"].startswith("file_")
    assert (body["object"], body["filename"], body["bytes"]) == ("file", f"my.{name}", len(data))
    assert (body["content_type"], body["purpose"], body["deleted"]) == (content_type, "reference", False)
    assert body["url"].startswith(f"http://testserver/api/v1/files/{body['id']}/content?expires=")
    # The signed URL works without any key.
    download = client.get(path_and_query(body["url"]))
    assert download.status_code == 200
    assert download["Content-Type"] == content_type
    assert download["X-Content-Type-Options"] == "nosniff"
    assert b"".join(download.streaming_content) == data
    assert_matches_openapi(download, "get", "/api/v1/files/{file_id}/content")


def test_large_uploads_spooled_to_disk_are_checked_the_same(api_client, client, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # Django writes bigger parts to a temporary file
    data = media.mp4(frames=24, size=(128, 96))
    assert len(data) > 1024
    body = upload(api_client, data, "clip.mp4").json()
    assert (body["content_type"], body["bytes"], body["width"]) == ("video/mp4", len(data), 128)
    assert b"".join(client.get(path_and_query(body["url"])).streaming_content) == data
    assert_error(upload(api_client, data[: len(data) // 2], "cut.mp4"), 415, "invalid_media")


def test_type_is_sniffed_not_taken_from_name_or_client_mime(api_client):
    response = upload(api_client, media.png(), "movie.mp4", content_type="video/mp4")
    assert response.status_code == 201
    assert response.json()["content_type"] == "image/png"
    assert (response.json()["width"], response.json()["height"]) == (64, 48)


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"<html><script>alert(1)</script></html>", "photo.png", "unsupported_file_type"),  # spoofed extension
        (media.png((200, 150))[:400], "cut.png", "invalid_media"),  # truncated image
        (media.jpeg((200, 150))[:600], "cut.jpg", "invalid_media"),
        (media.bomb_png(), "bomb.png", "image_too_large"),  # decompression bomb
        (media.undecodable_wav(), "voice.wav", "invalid_media"),  # undecodable audio
        (media.undecodable_mp3(), "voice.mp3", "invalid_media"),
    ],
    ids=["spoofed-extension", "truncated-png", "truncated-jpeg", "bomb", "undecodable-wav", "undecodable-mp3"],
)
def test_refused_content_is_415_and_nothing_is_stored(api_client, media_root, data, name, code):
    response = upload(api_client, data, name, content_type="image/png")
    assert_error(response, 415, code)
    assert_matches_openapi(response, "post", "/api/v1/files")
    assert stored_files(media_root) == []
    assert not File.objects.exists()


def test_oversize_is_413(api_client, rivya_settings):
    rivya_settings("RIVYA_API", FILE_MAX_BYTES={"image": 200})
    response = upload(api_client, media.png(), "a.png")
    assert_error(response, 413, "file_too_large")
    assert_matches_openapi(response, "post", "/api/v1/files")
    assert upload(api_client, media.wav(), "a.wav").status_code == 201


def test_request_over_the_body_limit_is_413_before_it_is_read(api_client, rivya_settings):
    rivya_settings("RIVYA_API", MAX_REQUEST_BYTES=1000)
    response = upload(api_client, media.wav(), "a.wav")
    assert_error(response, 413, "request_too_large", None)
    assert_matches_openapi(response, "post", "/api/v1/files")


@pytest.mark.parametrize("purpose", ["generation_output", "fine-tune", ""])
def test_wrong_purpose_is_400(api_client, purpose):
    response = upload(api_client, media.png(), "a.png", purpose=purpose)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "purpose"
    assert_matches_openapi(response, "post", "/api/v1/files")


def test_chat_attachments_must_be_images(api_client):
    assert_error(upload(api_client, media.wav(), "a.wav", purpose="chat_attachment"), 415, "unsupported_file_type")
    assert upload(api_client, media.png(), "a.png", purpose="chat_attachment").status_code == 201


def test_missing_file_and_json_bodies(api_client):
    response = api_client.post("/api/v1/files", {"purpose": "reference"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"
    as_json = api_client.post("/api/v1/files", {"purpose": "reference"}, format="json")
    assert_error(as_json, 415, "unsupported_media_type", None)
    assert_matches_openapi(as_json, "post", "/api/v1/files")


def test_files_need_a_key(client):
    response = client.get("/api/v1/files")
    assert response.status_code == 401
    assert_matches_openapi(response, "get", "/api/v1/files")


# --- reading, signed URLs and the account boundary ---------------------------------------------------


def test_get_returns_a_freshly_signed_url(api_client, rivya_settings):
    rivya_settings("RIVYA_API", PUBLIC_BASE_URL="https://cdn-free.example.com", FILE_URL_TTL_SECONDS=900)
    created = upload(api_client, media.png(), "a.png").json()
    file = File.objects.get(public_id=created["id"])
    stale = file_download_url(file, now=timezone.now() - timedelta(seconds=300))
    before = int(time.time())
    response = api_client.get(f"/api/v1/files/{created['id']}")
    assert response.status_code == 200
    assert_matches_openapi(response, "get", "/api/v1/files/{file_id}")
    url = response.json()["url"]
    assert url.startswith(f"https://cdn-free.example.com/api/v1/files/{created['id']}/content?")
    assert url != stale
    expires = int(url.split("expires=")[1].split("&")[0])
    assert before + 900 <= expires <= int(time.time()) + 900


def test_tampered_and_expired_links_are_403(api_client, client):
    created = upload(api_client, media.png(), "a.png").json()
    link = path_and_query(created["url"])
    tampered = link[:-2] + ("xx" if not link.endswith("xx") else "yy")
    response = client.get(tampered)
    assert_error(response, 403, "invalid_download_signature", "signature")
    assert_matches_openapi(response, "get", "/api/v1/files/{file_id}/content")
    pushed = link.replace("expires=", "expires=9")
    assert_error(client.get(pushed), 403, "invalid_download_signature", "signature")
    file = File.objects.get(public_id=created["id"])
    expired = path_and_query(file_download_url(file, now=timezone.now() - timedelta(hours=2)))
    response = client.get(expired)
    assert_error(response, 403, "download_link_expired", "expires")
    assert_matches_openapi(response, "get", "/api/v1/files/{file_id}/content")


def test_owner_downloads_with_the_key_and_others_get_404(api_client, make_account, make_api_client, client):
    created = upload(api_client, media.png(), "a.png").json()
    content = f"/api/v1/files/{created['id']}/content"
    owner = api_client.get(content)
    assert owner.status_code == 200
    assert b"".join(owner.streaming_content) == media.png()
    stranger = make_api_client(make_account())
    for response in (
        stranger.get(content),
        stranger.get(f"/api/v1/files/{created['id']}"),
        stranger.delete(f"/api/v1/files/{created['id']}"),
    ):
        assert_error(response, 404, "file_not_found", "file_id")
    assert stranger.get("/api/v1/files").json()["data"] == []
    anonymous = client.get(content)
    assert anonymous.status_code == 401
    assert_matches_openapi(anonymous, "get", "/api/v1/files/{file_id}/content")
    assert not File.objects.get(public_id=created["id"]).is_deleted()


def test_unknown_file_is_404(api_client):
    response = api_client.get("/api/v1/files/file_doesnotexist")
    assert_error(response, 404, "file_not_found", "file_id")
    assert_matches_openapi(response, "get", "/api/v1/files/{file_id}")


# --- deletion and lists --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delete_removes_bytes_and_keeps_the_record(api_client, client, media_root):
    created = upload(api_client, media.wav(), "a.wav").json()
    link = path_and_query(created["url"])
    assert len(stored_files(media_root)) == 1
    response = api_client.delete(f"/api/v1/files/{created['id']}")
    assert response.status_code == 200
    assert_matches_openapi(response, "delete", "/api/v1/files/{file_id}")
    assert (response.json()["deleted"], response.json()["url"]) == (True, None)
    assert stored_files(media_root) == []
    again = api_client.get(f"/api/v1/files/{created['id']}").json()
    assert (again["id"], again["deleted"], again["url"], again["sha256"]) == (
        created["id"],
        True,
        None,
        created["sha256"],
    )
    gone = client.get(link)
    assert_error(gone, 410, "file_deleted")
    assert_matches_openapi(gone, "get", "/api/v1/files/{file_id}/content")
    assert api_client.delete(f"/api/v1/files/{created['id']}").status_code == 200  # idempotent
    assert api_client.get("/api/v1/files").json()["data"] == []
    listed = api_client.get("/api/v1/files", {"include_deleted": "true"}).json()["data"]
    assert [f["id"] for f in listed] == [created["id"]]


def test_list_is_newest_first_paginated_and_filtered(api_client):
    ids = [upload(api_client, media.png(), f"{n}.png").json()["id"] for n in range(3)]
    chat = upload(api_client, media.png(), "c.png", purpose="chat_attachment").json()["id"]
    first = api_client.get("/api/v1/files", {"limit": 2})
    assert first.status_code == 200
    assert_matches_openapi(first, "get", "/api/v1/files")
    page = first.json()
    assert [f["id"] for f in page["data"]] == [chat, ids[2]]
    assert (page["has_more"], page["next_cursor"]) == (True, ids[2])
    rest = api_client.get("/api/v1/files", {"limit": 2, "after": page["next_cursor"]}).json()
    assert [f["id"] for f in rest["data"]] == [ids[1], ids[0]]
    assert (rest["has_more"], rest["next_cursor"]) == (False, None)
    only_refs = api_client.get("/api/v1/files", {"purpose": "reference"}).json()["data"]
    assert [f["id"] for f in only_refs] == ids[::-1]
    bad = api_client.get("/api/v1/files", {"limit": 0})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "limit"
    assert_matches_openapi(bad, "get", "/api/v1/files")
