"""Structured logging: text or JSON lines, with secrets redacted before anything is written."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

REDACTED = "[REDACTED]"

# Names of secret-bearing fields, not secrets themselves.
_SECRET_NAMES = (
    r"access_token|refresh_token|id_token|client_secret|code_verifier|code|password|secret_key"  # noqa: S105
    r"|api_token|token"
)
# Each pattern keeps the name (group 1) and replaces only the value.
_PATTERNS = [
    # Authorization: Bearer abc / Basic abc, in headers, reprs and JSON
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic)\s+)[^\s\"',}]+"),
    re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9\-._~+/]{8,}=*"),
    # the password of a URL's user info: scheme://user:password@host (database, Redis URLs)
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)[^/?#\s]+(?=@)"),
    # key=value in query strings and form bodies
    re.compile(rf"(?i)([?&\s]?(?:{_SECRET_NAMES})=)[^&\s\"']+"),
    # "key": "value" in JSON and dict reprs
    re.compile(rf"(?i)([\"'](?:{_SECRET_NAMES})[\"']\s*:\s*[\"'])[^\"']+"),
]

_known_secrets: set[str] = set()
_known_lock = threading.Lock()

run_id_var: ContextVar[str | None] = ContextVar("run_id", default=None)


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log line from now on."""
    if value and len(value) >= 6:
        with _known_lock:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """Remove tokens, client secrets, Authorization values and OAuth codes from ``text``."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    if _known_secrets:
        with _known_lock:
            secrets = sorted(_known_secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if re.fullmatch(_SECRET_NAMES, str(k), re.I) else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites each record so that neither its message nor its extra fields carry a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                secret_name = re.fullmatch(_SECRET_NAMES, key, re.I) is not None
                setattr(record, key, REDACTED if secret_name else _redact_value(value))
        if record.exc_info:
            # Formatters would render exc_info afresh, unredacted; hand them the text instead.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        run_id = run_id_var.get()
        if run_id is not None and not hasattr(record, "run_id"):
            record.run_id = run_id
        return True


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    """Tag every log line written inside the block with ``run_id``."""
    token = run_id_var.set(run_id)
    try:
        yield
    finally:
        run_id_var.reset(token)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the product's logs to stderr as text or JSON lines, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("segment_export")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs full URLs at INFO; they can carry OAuth codes, so they go through the same filter.
    for name in ("httpx", "uvicorn", "huey"):
        other = logging.getLogger(name)
        other.addFilter(RedactingFilter())
