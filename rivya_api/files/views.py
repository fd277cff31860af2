"""The Files API: upload, list, get, delete, download.

POST   /api/v1/files                    multipart upload (file, purpose)
GET    /api/v1/files                    the account's files, newest first
GET    /api/v1/files/{fileId}           one file, with a fresh signed URL
DELETE /api/v1/files/{fileId}           remove the bytes; the record stays (deleted: true)
GET    /api/v1/files/{fileId}/content   the bytes: for a signed URL, or for the owner's key
"""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rivya_api.common.auth import ApiPrincipal
from rivya_api.common.pagination import page_response
from rivya_api.common.schema import (
    PAGINATION_PARAMETERS,
    ErrorExample,
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.streaming import serve_streaming
from rivya_api.common.views import AccountScopedMixin
from rivya_api.conf import api_settings
from rivya_api.files.media import MEDIA_TYPES
from rivya_api.files.selectors import file_get_for_account, file_get_signed, file_list_for_account, file_open
from rivya_api.files.serializers import FileListQuerySerializer, FileOutputSerializer, FileUploadInputSerializer
from rivya_api.files.services import file_create, file_delete
from rivya_api.keys.scopes import HasScope

FILE_EXAMPLE = {
    "id": "file_8Xq2LmZc0aT4vRbN7kYpW1sE",
    "object": "file",
    "filename": "sketch.png",
    "bytes": 48213,
    "content_type": "image/png",
    "purpose": "reference",
    "sha256": "9f2c4e0b1d6a8f3e5c7b9a1d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f",
    "width": 768,
    "height": 512,
    "duration": None,
    "created_at": "2026-05-11T09:30:00Z",
    "expires_at": "2026-06-10T09:30:00Z",
    "deleted": False,
    "url": "https://api.example.com/api/v1/files/file_8Xq2LmZc0aT4vRbN7kYpW1sE/content"
    "?expires=1778495400&signature=kE2v0c3b7r1Yq8mUo4pZsT9wX6aLh5dN",
}
FILE_ID_PARAMETER = OpenApiParameter("file_id", str, OpenApiParameter.PATH, description="The file's id, `file_…`.")
NOT_FOUND = ErrorExample("file_not_found", "No such file: 'file_8Xq2LmZc0aT4vRbN7kYpW1sE'.", "file_id")
ACCEPTED = ", ".join(media_type.content_type for media_type in MEDIA_TYPES)


@extend_schema_view(
    create=extend_schema(
        operation_id="createFile",
        summary="Upload a file",
        description=(
            "Upload reference media or a chat attachment as `multipart/form-data`. The type is read from the "
            f"content (never the filename or the part's Content-Type) and must be one of: {ACCEPTED}. Images "
            "must decode completely; audio and video must decode with a real decoder. Size limits are per kind."
        ),
        tags=["Files"],
        request={"multipart/form-data": FileUploadInputSerializer},
        responses={
            201: FileOutputSerializer,
            **error_responses(
                400,
                413,
                415,
                codes={
                    400: [
                        (
                            "invalid_choice",
                            '"fine-tune" is not a valid choice; use one of: reference, chat_attachment.',
                            "purpose",
                        ),
                        ("missing_parameter", "No file was submitted.", "file"),
                    ],
                    413: [
                        ("file_too_large", "The image is 31457280 bytes; image files are limited to 20971520.", "file"),
                        ("request_too_large", "The request body is larger than 67108864 bytes."),
                    ],
                    415: [
                        ("unsupported_file_type", "The content is not an accepted type.", "file"),
                        ("invalid_media", "The PNG image could not be decoded.", "file"),
                        ("image_too_large", "The image is 30000×30000 pixels; at most 40000000 are accepted.", "file"),
                        ("unsupported_media_type", 'Unsupported media type "application/json" in request.'),
                    ],
                },
            ),
        },
        examples=[
            OpenApiExample(
                "upload",
                summary="multipart/form-data fields",
                value={"purpose": "reference", "file": "(the bytes of sketch.png)"},
                request_only=True,
                media_type="multipart/form-data",
            ),
            OpenApiExample("file", value=FILE_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    ),
    list=extend_schema(
        operation_id="listFiles",
        summary="List files",
        description="The account's files, newest first. Deleted and expired files only with `include_deleted=true`.",
        tags=["Files"],
        parameters=[FileListQuerySerializer, *PAGINATION_PARAMETERS],
        responses={200: list_of(FileOutputSerializer), **error_responses(400)},
        examples=[
            OpenApiExample(
                "files",
                value={"object": "list", "data": [FILE_EXAMPLE], "has_more": False, "next_cursor": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
    ),
    retrieve=extend_schema(
        operation_id="getFile",
        summary="Get a file",
        description="The file's metadata and a fresh signed download `url` (null once deleted or expired).",
        tags=["Files"],
        parameters=[FILE_ID_PARAMETER],
        responses={200: FileOutputSerializer, **error_responses(404, codes={404: [NOT_FOUND]})},
        examples=[OpenApiExample("file", value=FILE_EXAMPLE, response_only=True, status_codes=["200"])],
    ),
    destroy=extend_schema(
        operation_id="deleteFile",
        summary="Delete a file",
        description="Removes the file's bytes at once. The record stays, with `deleted: true` and no `url`; "
        "deleting again changes nothing.",
        tags=["Files"],
        parameters=[FILE_ID_PARAMETER],
        responses={200: FileOutputSerializer, **error_responses(404, codes={404: [NOT_FOUND]})},
        examples=[
            OpenApiExample(
                "deleted file",
                value={**FILE_EXAMPLE, "deleted": True, "url": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
    ),
)
class FileViewSet(AccountScopedMixin, viewsets.ViewSet):
    required_scopes = {
        "list": "files:read",
        "retrieve": "files:read",
        "create": "files:write",
        "destroy": "files:write",
    }  # rivya_api.keys.scopes
    parser_classes = [MultiPartParser]
    lookup_url_kwarg = "file_id"

    def get_serializer_class(self) -> Any:  # for the schema generator
        return FileOutputSerializer

    def _output(self, file: Any) -> dict[str, Any]:
        return FileOutputSerializer(file, context={"request": self.request}).data

    def create(self, request: Request) -> Response:
        form = FileUploadInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        file = file_create(
            account=self.account,
            content=upload,
            filename=upload.name,
            purpose=form.validated_data["purpose"],
            on_created=lambda file: self.idempotency_bind(file.public_id),
        )
        return Response(self._output(file), status=status.HTTP_201_CREATED)

    def idempotency_recover(self, reference: str) -> Response | None:
        # A retried upload whose first attempt stored the file and then died: that file, not a second one.
        if self.action != "create":
            return None
        return Response(self._output(file_get_for_account(account=self.account, file_id=reference)), status=201)

    def list(self, request: Request) -> Response:
        query = FileListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        files = file_list_for_account(
            account=self.account,
            purpose=query.validated_data.get("purpose"),
            include_deleted=query.validated_data["include_deleted"],
        )
        return page_response(request, files, lambda page: [self._output(file) for file in page])

    def retrieve(self, request: Request, file_id: str) -> Response:
        return Response(self._output(file_get_for_account(account=self.account, file_id=file_id)))

    def destroy(self, request: Request, file_id: str) -> Response:
        file = file_delete(file=file_get_for_account(account=self.account, file_id=file_id))
        return Response(self._output(file))


class FileContentView(AccountScopedMixin, APIView):
    """The bytes: with a genuine, unexpired signature no key is needed; otherwise the owner's key is."""

    required_scopes = {"get": "files:read"}  # rivya_api.keys.scopes

    def get_permissions(self) -> list[Any]:
        return []  # decided in get(): a signature or the owner's key

    @extend_schema(
        operation_id="downloadFile",
        summary="Download a file's content",
        description=(
            "The file's bytes with its sniffed `Content-Type`. Use the signed `url` of the file object (no "
            "API key needed while it is valid), or call this path with the owner's API key and no signature."
        ),
        tags=["Files"],
        # Either the owner's key or no key at all (a signed link).
        auth=[{"ApiKeyAuth": []}, {}],
        parameters=[
            FILE_ID_PARAMETER,
            OpenApiParameter("expires", int, required=False, description="From the signed URL (unix time)."),
            OpenApiParameter("signature", str, required=False, description="From the signed URL."),
        ],
        responses={
            # Each type a file can be served as (clients and fuzzers check the Content-Type against these).
            **{
                (200, media_type.content_type): OpenApiResponse(
                    OpenApiTypes.BINARY, description="The content, served as its sniffed type."
                )
                for media_type in MEDIA_TYPES
            },
            **error_responses(
                403,
                404,
                410,
                codes={
                    403: [
                        ("invalid_download_signature", "The download link's signature is not valid.", "signature"),
                        ("download_link_expired", "The download link has expired.", "expires"),
                    ],
                    404: [NOT_FOUND],
                    410: [("file_deleted", "File file_8Xq2LmZc0aT4vRbN7kYpW1sE was deleted or has expired.", "file")],
                },
            ),
        },
    )
    def get(self, request: Request, file_id: str) -> FileResponse:
        params = request.query_params
        if "signature" in params or "expires" in params:
            file = file_get_signed(file_id=file_id, expires=params.get("expires"), signature=params.get("signature"))
        elif isinstance(request.user, ApiPrincipal):
            HasScope().has_permission(request, self)  # with a key (no signature): files:read
            file = file_get_for_account(account=self.account, file_id=file_id)
        else:
            raise exceptions.NotAuthenticated()
        response = FileResponse(file_open(file), content_type=file.content_type, filename=file.filename)
        response["Cache-Control"] = f"private, max-age={int(api_settings.FILE_URL_TTL_SECONDS)}"
        response["X-Content-Type-Options"] = "nosniff"
        # Even if a browser renders it, the content can run nothing and reach nothing.
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return serve_streaming(request, response)
