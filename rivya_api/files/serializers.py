"""The public file object and the upload form."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from rivya_api.common.fields import ChoiceField
from rivya_api.common.schema import constant_field
from rivya_api.common.serializers import StrictSerializer
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
    """The public file object (what ``GET /files/{id}`` returns), for other resources that embed files."""
    return dict(FileOutputSerializer(file, context={"request": request}).data)
