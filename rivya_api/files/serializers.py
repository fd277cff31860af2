"""The public file object and the upload form."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from rivya_api.common.fields import ChoiceField
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import StrictSerializer
from rivya_api.conf import api_settings
from rivya_api.files.models import File
from rivya_api.files.selectors import file_download_url
from rivya_api.files.services import UPLOAD_PURPOSE_VALUES


@extend_schema_serializer(component_name="FileUpload")
class FileUploadInputSerializer(StrictSerializer):
    file = serializers.FileField(
        help_text="The content. Its type is read from the bytes: PNG, JPEG, WebP, GIF, WAV, MP3, OGG/Opus, MP4, WebM."
    )
    purpose = ChoiceField(
        choices=UPLOAD_PURPOSE_VALUES,
        help_text="`reference`: media a generation uses as input. `chat_attachment`: an image for a chat message.",
    )


class FileListQuerySerializer(serializers.Serializer):
    purpose = ChoiceField(choices=File.Purpose.values, required=False)
    include_deleted = serializers.BooleanField(
        required=False, default=False, help_text="Also list deleted and expired files."
    )


@extend_schema_serializer(component_name="File")
class FileOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    object = constant_field("file")
    filename = serializers.CharField()
    bytes = serializers.IntegerField(source="size")
    content_type = serializers.CharField(help_text="Sniffed from the content, e.g. `image/png`.")
    purpose = serializers.ChoiceField(choices=File.Purpose.values)
    sha256 = serializers.CharField(help_text="SHA-256 of the content, hex.")
    width = serializers.IntegerField(allow_null=True, help_text="Pixels (images and video).")
    height = serializers.IntegerField(allow_null=True, help_text="Pixels (images and video).")
    duration = serializers.FloatField(allow_null=True, help_text="Seconds (audio and video).")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="When the file is deleted automatically.")
    deleted = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    def get_deleted(self, file: File) -> bool:
        return file.is_deleted()

    @extend_schema_field(
        {
            "type": ["string", "null"],
            "format": "uri",
            "description": "Absolute, signed download URL, valid for a limited time (a fresh one on every "
            "GET); no API key needed to use it. Null once the file is deleted or expired.",
        }
    )
    def get_url(self, file: File) -> str | None:
        return file_download_url(file, self.context.get("request"))


def file_object(file: File, request: Any = None) -> dict[str, Any]:
    """The public file object (what ``GET /files/{id}`` returns), for other resources that embed files
    (a generation's outputs, in its responses and webhook events)."""
    if api_settings.FILE_BODY_PLAIN:
        return file_body(file, request)
    return dict(FileOutputSerializer(file, context={"request": request}).data)


_DATETIME = serializers.DateTimeField()
_PURPOSE = serializers.ChoiceField(choices=File.Purpose.values)


def _opt(convert: Any, value: Any) -> Any:
    return None if value is None else convert(value)  # DRF renders a None attribute as None, any field


def file_body(file: File, request: Any = None) -> dict[str, Any]:
    """``FileOutputSerializer(file).data`` built by hand: the same keys in the same order, the same
    values (each through what the serializer's field does with it), without DRF's walk over bound
    fields for every file of every generation's finish. ``RIVYA_API["FILE_BODY_PLAIN"] = False``
    renders with the serializer; ``tests/rivya_api/generations/test_file_body.py`` compares the two."""
    when = _DATETIME.to_representation
    return {
        "id": _opt(str, file.public_id),
        "object": "file",
        "filename": _opt(str, file.filename),
        "bytes": _opt(int, file.size),
        "content_type": _opt(str, file.content_type),
        "purpose": _opt(_PURPOSE.to_representation, file.purpose),
        "sha256": _opt(str, file.sha256),
        "width": _opt(int, file.width),
        "height": _opt(int, file.height),
        "duration": _opt(float, file.duration),
        "created_at": _opt(when, file.created_at),
        "expires_at": _opt(when, file.expires_at),
        "deleted": file.is_deleted(),
        "url": file_download_url(file, request),
    }
