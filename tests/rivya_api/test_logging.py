"""Structured logging: JSON lines in production, readable ones in development, request id on each."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.conf import settings

from rivya_api.common import request_id


def _handler_for(formatter_name: str) -> tuple[logging.Logger, io.StringIO]:
    config = settings.LOGGING
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter_config = dict(config["formatters"][formatter_name])
    factory = formatter_config.pop("()", None)
    formatter = _build(factory, formatter_config) if factory else logging.Formatter(formatter_config["format"])
    handler.setFormatter(formatter)
    for filter_config in config["filters"].values():
        handler.addFilter(_build(filter_config["()"], {}))
    logger = logging.getLogger(f"tests.logging.{formatter_name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def _build(dotted: str, kwargs: dict):
    from django.utils.module_loading import import_string

    return import_string(dotted)(**kwargs)


@pytest.fixture
def in_request():
    token = request_id.set_current_request_id("req_logtest123")
    yield "req_logtest123"
    request_id.reset_current_request_id(token)


def test_json_lines_carry_the_request_id(in_request):
    logger, stream = _handler_for("json")
    logger.info("charged %s credits", 7)
    record = json.loads(stream.getvalue())
    assert record["message"] == "charged 7 credits"
    assert record["request_id"] == in_request
    assert record["level"] == "INFO"


def test_readable_lines_carry_the_request_id(in_request):
    logger, stream = _handler_for("readable")
    logger.warning("something odd")
    assert f"[{in_request}]" in stream.getvalue()


def test_lines_outside_a_request_say_so():
    logger, stream = _handler_for("json")
    logger.info("background")
    assert json.loads(stream.getvalue())["request_id"] == "-"


def test_logs_go_to_stderr_not_stdout():
    handler = settings.LOGGING["handlers"]["stderr"]
    assert handler["stream"] == "ext://sys.stderr"
    assert settings.LOGGING["root"]["handlers"] == ["stderr"]
