"""Errors the emulator answers with, shaped like Constant Contact's (API) and Okta's (OAuth)."""

from __future__ import annotations

from typing import Any

# Exact body and header Constant Contact sends with a 401 (FACTS.md §2).
UNAUTHORIZED_BODY = {"error_key": "unauthorized", "error_message": "Unauthorized"}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer realm=api.cc.email"}
THROTTLED_BODY = {"error_key": "throttled", "error_message": "Too Many Requests"}
QUOTA_EXCEEDED_BODY = {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}

MESSAGES = {
    400: "Bad request. Either the JSON was malformed or there was a data validation error.",
    403: "Forbidden request. You lack the necessary scopes, you lack the necessary user "
    "privileges, or the application is deactivated.",
    404: "The requested resource was not found.",
    409: "Conflict. The resource you are creating or updating conflicts with an existing resource.",
    415: "Unsupported Media Type.",
    500: "There was a problem with our internal service.",
    503: "Our internal service is temporarily unavailable.",
}


class EmulatorError(Exception):
    """Root of the emulator's errors. The emulator imports nothing of the product (it can be
    installed and run alone), so its errors have their own root."""


class ControlError(EmulatorError):
    """A control call the emulator refused (``status``), or (``status`` 0) could not answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ControlNotFoundError(ControlError):
    """A control call for something the emulator does not have (404)."""


class EmulatorUnreachableError(ControlError):
    """No emulator answered at the address (a connection error or timeout)."""


class ApiError(EmulatorError):
    """A V3 API error response: ``body`` is an array of ``{error_key, error_message}`` except
    for 401 and 429, which Constant Contact sends as a single object."""

    def __init__(
        self, status: int, body: Any, *, headers: dict[str, str] | None = None
    ) -> None:
        message = body["error_message"] if isinstance(body, dict) else body[0]["error_message"]
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def of(cls, status: int, error_key: str, message: str | None = None) -> ApiError:
        """An error answered as the usual one-element array."""
        return cls(status, [{"error_key": error_key, "error_message": message or MESSAGES[status]}])

    @classmethod
    def invalid(cls, message: str, error_key: str = "contacts.api.validation.error") -> ApiError:
        """400: the request failed validation; ``message`` says which field and why."""
        return cls.of(400, error_key, message)

    @classmethod
    def not_found(cls, what: str, message: str | None = None) -> ApiError:
        """404 for an unknown id; ``what`` names the resource (``contacts``, ``activities``...)."""
        return cls.of(404, f"{what}.api.not_found", message)

    @classmethod
    def unauthorized(cls) -> ApiError:
        """401 with Constant Contact's exact body and header."""
        return cls(401, dict(UNAUTHORIZED_BODY), headers=dict(UNAUTHORIZED_HEADERS))

    @classmethod
    def throttled(cls) -> ApiError:
        """429: more than the allowed requests in one second."""
        return cls(429, dict(THROTTLED_BODY))

    @classmethod
    def quota_exceeded(cls) -> ApiError:
        """429: the daily quota of the API key is used up."""
        return cls(429, dict(QUOTA_EXCEEDED_BODY))


class OAuthError(EmulatorError):
    """An authorization-server error: ``{"error", "error_description"}`` with an HTTP status."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body of the error response."""
        return {"error": self.error, "error_description": self.description}


class RedirectError(OAuthError):
    """An authorize-request error sent back to the app's redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, cause: OAuthError, *, redirect_uri: str, state: str | None) -> None:
        super().__init__(cause.error, cause.description, status=cause.status)
        self.redirect_uri = redirect_uri
        self.state = state
