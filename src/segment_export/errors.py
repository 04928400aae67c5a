"""One error root for the whole product, branched by what the caller should do about it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from segment_export.languages import N_


class SegmentExportError(Exception):
    """Root of every error the product raises on purpose.

    ``hint`` tells a person what to do; ``context`` keeps the facts (ids, rows, fields) for logs
    and problem bodies.

    A message that carries values is a catalogue msgid with ``%(name)s`` placeholders and its
    ``values``: ``DataError(N_("No segment named %(name)s"), values={"name": repr(name)})``.
    ``message`` (and ``str()``) is then the English text with the values filled in, exactly as
    an f-string would have written it; ``msgid`` and ``values`` let ``error_text`` show it in
    the reader's language. ``values`` is not context: problem bodies do not see it.
    """

    hint: str = ""
    msgid: str = ""
    values: Mapping[str, Any] | None = None

    def __init__(self, message: str, *, hint: str | None = None,
                 values: Mapping[str, Any] | None = None, **context: Any) -> None:
        if values is not None:
            self.msgid = message
            self.values = dict(values)
            message = message % self.values
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
        self.context = context

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class TranslatedValueError(ValueError):
    """A ValueError of a pydantic validator that the reader sees in their language.

    Pydantic keeps the exception in the error's ``ctx["error"]`` and writes ``Value error,
    <str(exc)>``; ``str()`` is the English text (what pydantic, the API and logs show) and
    ``msgid``/``values`` let ``error_text`` translate it, as for :class:`SegmentExportError`.
    """

    def __init__(self, message: str, *, values: Mapping[str, Any] | None = None) -> None:
        self.msgid = message if values is not None else ""
        self.values = dict(values) if values is not None else None
        self.message = message % self.values if self.values is not None else message
        super().__init__(self.message)


class RetriableError(SegmentExportError):
    """A passing fault (throttling, 5xx, timeout, lost connection): the call may succeed later."""

    hint = N_("This is usually temporary; the call is retried automatically.")

    def __init__(
        self, message: str, *, retry_after: float | None = None, **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class QuotaExhaustedError(RetriableError):
    """The daily request quota is used up; nothing succeeds before ``resets_at``."""

    def __init__(self, message: str, *, resets_at: datetime, **context: Any) -> None:
        super().__init__(message, **context)
        self.resets_at = resets_at
        self.hint = (f"The daily quota resets at {resets_at.isoformat()}; a run it stopped is "
                     "paused until then and resumes by itself (batches already confirmed are "
                     "not sent again).")


class ReauthorizationNeededError(SegmentExportError):
    """The stored grant no longer works (revoked, expired or a lost refresh-token rotation)."""

    hint = N_("An administrator must re-authorize the connection "
              "(Admin > Connections > Re-authorize).")


class ConfigurationError(SegmentExportError):
    """A setting, a connection or an export definition is wrong; a person must change it."""

    hint = N_("Fix the configuration named in the message and try again.")


class NotFoundError(ConfigurationError):
    """A named object (export, segment, connection, list, run) does not exist."""

    hint = N_("Check the name or id.")


class PermissionDeniedError(SegmentExportError):
    """The acting user's role does not allow this action."""

    hint = N_("Ask an administrator for access.")


class DataError(SegmentExportError):
    """Input data is malformed; the message names the row, column or field."""

    hint = N_("Correct the data named in the message and try again.")


class FatalError(SegmentExportError):
    """The remote service refused the request for good; retrying the same request cannot help."""

    hint = N_("The request was refused; see the message for the service's reasons.")


__all__ = [
    "ConfigurationError",
    "DataError",
    "FatalError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExhaustedError",
    "ReauthorizationNeededError",
    "RetriableError",
    "SegmentExportError",
    "TranslatedValueError",
]
