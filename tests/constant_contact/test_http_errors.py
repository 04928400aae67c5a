"""One mapping from Constant Contact's answers to the product's errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from segment_export.constant_contact.http_errors import (
    UnauthorizedError,
    map_http_error,
    parse_error_list,
)
from segment_export.errors import (
    ConfigurationError,
    FatalError,
    NotFoundError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
    RetriableError,
)
from tests.constant_contact.fakes import json_response

NOW = datetime(2026, 3, 14, 23, 59, 30, tzinfo=UTC)
REQUEST = httpx.Request("POST", "https://api.cc.email/v3/activities/contacts_json_import")


def _response(status: int, body: Any) -> httpx.Response:
    response = json_response(status, body)
    response.request = REQUEST
    return response


def test_success_is_no_error() -> None:
    assert map_http_error(_response(200, {}), now=NOW) is None
    assert map_http_error(_response(201, {}), now=NOW) is None


def test_quota_exceeded_is_not_plain_retriable_and_names_midnight_utc() -> None:
    error = map_http_error(
        _response(429, {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}), now=NOW
    )
    assert isinstance(error, QuotaExhaustedError)
    assert error.resets_at == datetime(2026, 3, 15, tzinfo=UTC)
    assert error.context["errors"] == [
        {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}
    ]


@pytest.mark.parametrize("body", [
    {"error_key": "throttled", "error_message": "Too Many Requests"},  # what is seen live
    [{"error_key": "throttled", "error_message": "Too Many Requests"}],  # the usual error list
])
def test_throttled_is_retriable_as_an_object_or_an_array(body: Any) -> None:
    error = map_http_error(_response(429, body), now=NOW)
    assert type(error) is RetriableError
    assert error.context["reason"] == "throttled"
    assert error.context["errors"] == [
        {"error_key": "throttled", "error_message": "Too Many Requests"}]


def test_quota_exceeded_is_recognised_in_an_array_too() -> None:
    body = [{"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}]
    assert isinstance(map_http_error(_response(429, body), now=NOW), QuotaExhaustedError)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_faults_are_retriable(status: int) -> None:
    error = map_http_error(
        _response(status, [{"error_key": "x", "error_message": "boom"}]), now=NOW
    )
    assert type(error) is RetriableError
    assert error.context["status"] == status


def test_transport_faults_are_retriable() -> None:
    for exc in (httpx.ReadTimeout("slow", request=REQUEST), httpx.ConnectError("refused")):
        error = map_http_error(exc, now=NOW)
        assert type(error) is RetriableError
        assert error.context["reason"] == type(exc).__name__


def test_401_is_unauthorized_with_the_single_object_body() -> None:
    error = map_http_error(
        _response(401, {"error_key": "unauthorized", "error_message": "Unauthorized"}), now=NOW
    )
    assert isinstance(error, UnauthorizedError)
    assert isinstance(error, ReauthorizationNeededError)
    assert error.context["errors"][0]["error_key"] == "unauthorized"


def test_403_is_configuration_404_not_found_other_4xx_fatal_with_the_error_list() -> None:
    body = [{"error_key": "contacts.api.validation.error", "error_message": "list_ids required"}]
    assert isinstance(map_http_error(_response(403, body), now=NOW), ConfigurationError)
    assert isinstance(map_http_error(_response(404, body), now=NOW), NotFoundError)
    for status in (400, 409, 415):
        error = map_http_error(_response(status, body), now=NOW)
        assert type(error) is FatalError
        assert error.context["errors"] == body
        assert error.context["path"] == "/v3/activities/contacts_json_import"
        assert "list_ids required" in str(error)


def test_oauth_errors() -> None:
    grant = map_http_error(
        _response(400, {"error": "invalid_grant", "error_description": "expired refresh token"}),
        now=NOW,
    )
    assert type(grant) is ReauthorizationNeededError
    assert grant.context["errors"] == [
        {"error_key": "invalid_grant", "error_message": "expired refresh token"}
    ]
    client = map_http_error(_response(401, {"error": "invalid_client"}), now=NOW)
    assert type(client) is ConfigurationError


def test_unparseable_bodies_are_kept_as_text() -> None:
    response = httpx.Response(502, content=b"<html>Bad gateway</html>", request=REQUEST)
    assert parse_error_list(response) == [
        {"error_key": "unparsed", "error_message": "<html>Bad gateway</html>"}
    ]
    assert parse_error_list(httpx.Response(500, content=b"", request=REQUEST)) == []
