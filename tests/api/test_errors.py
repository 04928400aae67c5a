"""Errors render in one place: problem+json for the API, an HTML page for the UI."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from segment_export.api.errors import classify
from segment_export.constant_contact import AuthorizationDeniedError, UnauthorizedError
from segment_export.errors import (
    ConfigurationError,
    DataError,
    FatalError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
    RetriableError,
    SegmentExportError,
)
from segment_export.users import AuthenticationError
from tests.api.harness import AppWorld


@pytest.mark.parametrize(("error", "status"), [
    (NotFoundError("x"), 404),
    (PermissionDeniedError("x"), 403),
    (AuthenticationError("x"), 401),
    (ConfigurationError("x"), 422),
    (DataError("x"), 400),
    (AuthorizationDeniedError("x"), 400),
    (ReauthorizationNeededError("x"), 409),
    (UnauthorizedError("x"), 409),
    (RetriableError("x"), 503),
    (QuotaExhaustedError("x", resets_at=datetime(2030, 1, 1, tzinfo=UTC)), 503),
    (FatalError("x"), 500),
    (SegmentExportError("x"), 500),
])
def test_each_error_has_its_status(error: SegmentExportError, status: int) -> None:
    assert classify(error)[0] == status


def _boom_routes(site: AppWorld) -> None:
    app = site.server.app

    @app.get("/api/test-boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2 at /srv/app.py")

    @app.get("/api/test-quota", include_in_schema=False)
    def quota() -> None:
        raise QuotaExhaustedError("Daily quota used", resets_at=datetime(2030, 1, 2, tzinfo=UTC))

    @app.get("/test-page-boom", include_in_schema=False)
    def page_boom() -> None:
        raise RuntimeError("secret internals")


def test_problem_documents(site: AppWorld, caplog: pytest.LogCaptureFixture) -> None:
    _boom_routes(site)
    api = site.api("admin")
    missing = api.get("/api/exports/does-not-exist")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    body = missing.json()
    assert body["status"] == 404
    assert body["title"] == "Not found"
    assert body["code"] == "not_found"
    assert "does-not-exist" in body["detail"]

    invalid = api.post("/api/segments", json={"name": "", "expression": 42})
    assert invalid.status_code == 422
    assert invalid.json()["code"] == "invalid_request"
    assert {tuple(e["loc"]) for e in invalid.json()["errors"]} >= {("body", "name")}

    unknown = api.get("/api/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    with caplog.at_level(logging.ERROR):
        crash = api.get("/api/test-boom")
    assert crash.status_code == 500
    assert crash.headers["content-type"] == "application/problem+json"
    text = crash.text
    assert "hunter2" not in text
    assert "RuntimeError" not in text
    assert "/srv" not in text
    reference = crash.json()["detail"].split("reference ")[1].rstrip(").")
    assert any(reference in r.getMessage() for r in caplog.records)

    busy = api.get("/api/test-quota")
    assert busy.status_code == 503
    assert busy.headers["retry-after"].endswith("GMT")


def test_pages_get_an_html_error_page(site: AppWorld) -> None:
    _boom_routes(site)
    web = site.browser("admin")
    missing = web.get("/data/exports/does-not-exist")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Not found" in missing.text
    assert "does-not-exist" in missing.text
    viewer = site.browser("viewer")
    forbidden = viewer.get("/admin/connections")
    assert forbidden.status_code == 403
    assert "Ask an administrator" in forbidden.text
    crash = web.get("/test-page-boom")
    assert crash.status_code == 500
    assert "secret internals" not in crash.text
    assert "Something went wrong" in crash.text


def test_security_headers(site: AppWorld) -> None:
    page = site.web().get("/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    # The OAuth consent page lives on Constant Contact's (here the emulator's) origin.
    assert site.settings.cc_auth_url.split("/")[2] in policy
