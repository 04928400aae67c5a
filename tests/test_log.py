"""Redaction: no token, client secret, Authorization value or OAuth code reaches a log line."""

from __future__ import annotations

import json
import logging

import pytest

from segment_export.log import REDACTED, configure_logging, redact, register_secret, run_context

SECRET = "s3cr3t-VALUE-abcdefghijklmnop"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {SECRET}",
        f"headers={{'authorization': 'Basic {SECRET}'}}",
        f"POST /token?grant_type=refresh_token&refresh_token={SECRET}",
        f"GET /callback?code={SECRET}&state=abc",
        f"client_secret={SECRET}",
        f'{{"access_token": "{SECRET}", "expires_in": 86400}}',
        f"{{'refresh_token': '{SECRET}'}}",
        f"code_verifier={SECRET}",
    ],
)
def test_secret_shapes_are_redacted(text: str) -> None:
    out = redact(text)
    assert SECRET not in out
    assert REDACTED in out


def test_ordinary_text_is_untouched() -> None:
    text = "exported 40000 contacts to list 0b1a in 3.2 s (state=completed)"
    assert redact(text) == text


def test_registered_secret_is_masked_anywhere() -> None:
    value = "plain-looking-value-9d8f7a"
    register_secret(value)
    assert value not in redact(f"something odd happened with {value} here")


def _capture(fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    configure_logging("DEBUG", fmt)
    logger = logging.getLogger("segment_export.test")
    logger.info("refreshing with refresh_token=%s", SECRET, extra={"client_secret": SECRET})
    try:
        raise ValueError(f"token endpoint said access_token={SECRET}")
    except ValueError:
        logger.exception("failed")
    with run_context("run-123"):
        logger.warning("inside a run")
    return capsys.readouterr().err


def test_text_logs_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    err = _capture("text", capsys)
    assert SECRET not in err
    assert "refreshing with refresh_token=" in err


def test_json_logs_are_json_lines_with_run_id_and_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _capture("json", capsys)
    assert SECRET not in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records[0]["level"] == "INFO"
    assert records[0]["client_secret"] == REDACTED
    assert records[-1]["run_id"] == "run-123"


def test_httpx_logger_is_filtered(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", "text")
    httpx_logger = logging.getLogger("httpx")
    handler = logging.StreamHandler()
    httpx_logger.addHandler(handler)
    httpx_logger.setLevel(logging.INFO)
    try:
        httpx_logger.info('HTTP Request: GET http://127.0.0.1/cb?code=%s&state=x "200"', SECRET)
    finally:
        httpx_logger.removeHandler(handler)
    assert SECRET not in capsys.readouterr().err
