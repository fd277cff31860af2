"""What makes two requests the same request, and which keys are well-formed."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.test.client import encode_multipart
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request

from rivya_api.common.errors import ApiError
from rivya_api.idempotency.http import idempotency_key_from_request, request_fingerprint

factory = RequestFactory()


def json_request(body: str, path: str = "/api/v1/things", method: str = "post", **extra):
    request = getattr(factory, method)(path, data=body, content_type="application/json", **extra)
    return Request(request, parsers=[JSONParser()])


def fingerprint_json(body: str, **kwargs) -> str:
    return request_fingerprint(json_request(body, **kwargs))


def test_json_key_order_and_whitespace_do_not_matter():
    assert fingerprint_json('{"a": 1, "b": [1, 2], "c": {"x": null, "y": "é"}}') == fingerprint_json(
        '{"c":{"y":"\\u00e9","x":null},"b":[1,2],"a":1}'
    )


@pytest.mark.parametrize(
    "other",
    ['{"a": 1, "b": [2, 1]}', '{"a": 1, "b": [1, 2], "c": null}', '{"a": 2, "b": [1, 2]}', '{"a": "1", "b": [1, 2]}'],
    ids=["array-order", "explicit-null", "value", "type"],
)
def test_json_meaning_matters(other):
    assert fingerprint_json('{"a": 1, "b": [1, 2]}') != fingerprint_json(other)


def test_method_path_and_query_matter_query_order_does_not():
    body = '{"a": 1}'
    base = fingerprint_json(body, path="/api/v1/things?x=1&y=2")
    assert base == fingerprint_json(body, path="/api/v1/things?y=2&x=1")
    assert base != fingerprint_json(body, path="/api/v1/things?x=1&y=3")
    assert base != fingerprint_json(body, path="/api/v1/others?x=1&y=2")
    assert base != fingerprint_json(body, path="/api/v1/things?x=1&y=2", method="put")


def test_unparsable_json_is_hashed_as_bytes():
    assert fingerprint_json("{nope") == fingerprint_json("{nope")
    assert fingerprint_json("{nope") != fingerprint_json("{nope ")


def test_same_fingerprint_when_the_body_was_parsed_first():
    early = json_request('{"b": 2, "a": [1, 2]}')
    assert early.data == {"b": 2, "a": [1, 2]}  # DRF consumed the stream
    assert request_fingerprint(early) == fingerprint_json('{"a":[1,2],"b":2}')


def multipart_request(fields, boundary):
    request = factory.post(
        "/api/v1/files",
        data=encode_multipart(boundary, fields),
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    return Request(request, parsers=[MultiPartParser()])


def fields(content=b"PNG bytes", name="a.png", purpose="reference"):
    return {"purpose": purpose, "file": SimpleUploadedFile(name, content, content_type="image/png")}


def test_multipart_ignores_the_boundary_and_keeps_the_file_readable():
    first = multipart_request(fields(), "boundary-1")
    assert request_fingerprint(first) == request_fingerprint(multipart_request(fields(), "x-other-boundary-2"))
    assert first.FILES["file"].read() == b"PNG bytes"


@pytest.mark.parametrize(
    "changed",
    [{"content": b"PNG other"}, {"name": "b.png"}, {"purpose": "mask"}],
    ids=["content", "file-name", "field"],
)
def test_multipart_fields_and_files_matter(changed):
    assert request_fingerprint(multipart_request(fields(), "b1")) != request_fingerprint(
        multipart_request(fields(**changed), "b1")
    )


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("abc", "abc"),
        ("  padded  ", "padded"),
        ('"8e03978e-40d5"', "8e03978e-40d5"),
        ('"with \\"escaped\\" quote"', 'with "escaped" quote'),
        ("a b~!", "a b~!"),
        ("k" * 255, "k" * 255),
    ],
)
def test_well_formed_keys(header, key):
    assert idempotency_key_from_request(factory.post("/", HTTP_IDEMPOTENCY_KEY=header)) == key


@pytest.mark.parametrize("header", ["", "k" * 256, "new\nline", "ta\tb", "caf\u00e9", '""', "\x7f"])
def test_malformed_keys(header):
    with pytest.raises(ApiError) as raised:
        idempotency_key_from_request(factory.post("/", HTTP_IDEMPOTENCY_KEY=header))
    assert (raised.value.status_code, raised.value.code, raised.value.param) == (
        400,
        "idempotency_key_invalid",
        "Idempotency-Key",
    )


def test_absent_key():
    assert idempotency_key_from_request(factory.post("/")) is None
