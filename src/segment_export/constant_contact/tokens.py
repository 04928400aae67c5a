"""Where a connection's grant lives, and the provider that refreshes it one caller at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from segment_export.constant_contact.auth import OAuthClient, Token, utc_now
from segment_export.errors import ReauthorizationNeededError, SegmentExportError
from segment_export.log import register_secret

log = logging.getLogger(__name__)

CONNECTED = "connected"
REAUTHORIZATION_NEEDED = "reauthorization_needed"
DEFAULT_REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class StoredToken:
    """A connection's grant as stored: the token (None before authorization), its version and
    the connection status. ``version`` goes up on every write, so a refresher can tell whether
    another one got there first."""

    token: Token | None
    version: int
    status: str


TokenChange = Callable[[StoredToken], Token | None]


class TokenStore(Protocol):
    """Persistence of one connection's grant, with an exclusive update."""

    def load(self) -> StoredToken:
        """The grant as stored now."""
        ...

    def update(self, change: TokenChange) -> StoredToken:
        """Run ``change`` on the current grant while holding the connection's exclusive lock.

        If it returns a Token, that token is written (version + 1, status connected) and
        committed before ``update`` returns; if it returns None nothing changes. Other callers of
        ``update`` for the same connection, in any thread or process, wait meanwhile. If
        ``change`` raises, nothing is written and the error propagates.
        """
        ...

    def mark_reauthorization_needed(self, reason: str) -> None:
        """Record that the grant is dead and a person must re-authorize."""
        ...


class InMemoryTokenStore:
    """A TokenStore in memory for one process (tests, one-off scripts)."""

    def __init__(self, token: Token | None = None) -> None:
        self._state = StoredToken(token=token, version=0, status=CONNECTED if token else "pending")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def load(self) -> StoredToken:
        """See TokenStore.load."""
        return self._state

    def update(self, change: TokenChange) -> StoredToken:
        """See TokenStore.update."""
        with self._lock:
            new = change(self._state)
            if new is not None:
                self._state = StoredToken(
                    token=new, version=self._state.version + 1, status=CONNECTED
                )
            return self._state

    def mark_reauthorization_needed(self, reason: str) -> None:
        """See TokenStore.mark_reauthorization_needed."""
        with self._lock:
            self._state = replace(self._state, status=REAUTHORIZATION_NEEDED)
            self.last_error = reason


def save_token(store: TokenStore, token: Token) -> StoredToken:
    """Store a grant just obtained (code exchange or re-authorization), replacing any other."""
    return store.update(lambda _current: token)


class TokenProvider(Protocol):
    """What the API client needs from authentication."""

    def access_token(self) -> str:
        """A usable access token (refreshing first if it is about to expire)."""
        ...

    def force_refresh(self, stale: str) -> str:
        """A token other than ``stale``, which the API just refused with 401."""
        ...


class StaticTokenProvider:
    """A fixed access token (live tests, scripts): a 401 cannot be cured by refreshing."""

    def __init__(self, access_token: str) -> None:
        register_secret(access_token)
        self._token = access_token

    def access_token(self) -> str:
        """The fixed token."""
        return self._token

    def force_refresh(self, stale: str) -> str:
        """Always raises ReauthorizationNeededError: there is nothing to refresh with."""
        raise ReauthorizationNeededError(
            "The fixed access token was refused and cannot be refreshed"
        )


class RefreshingTokenProvider:
    """Access tokens for one connection, refreshed shortly before expiry or after a 401.

    Refreshes go through ``store.update``: under the connection's lock the grant is re-read; if
    another thread or process already replaced the token we were about to refresh, that token is
    used and the token endpoint is not called. Otherwise the refresh token is spent, and the new
    grant (with its rotated refresh token) is committed before the access token is handed out.
    ``invalid_grant`` marks the connection ``reauthorization_needed`` and raises
    ReauthorizationNeededError. ``on_refresh(ok)`` hears of every call to the token endpoint
    (for metrics: this package records none itself).
    """

    def __init__(
        self,
        *,
        store: TokenStore,
        oauth: OAuthClient,
        refresh_margin: timedelta = DEFAULT_REFRESH_MARGIN,
        now: Callable[[], datetime] = utc_now,
        on_refresh: Callable[[bool], None] = lambda ok: None,
    ) -> None:
        self.store = store
        self.on_refresh = on_refresh
        self.oauth = oauth
        self.refresh_margin = refresh_margin
        self._now = now
        self._cached: StoredToken | None = None
        # Threads of this process queue here rather than each opening a locking transaction.
        self._lock = threading.Lock()

    def access_token(self) -> str:
        """See TokenProvider.access_token."""
        state = self._cached or self._load()
        token = self._usable(state)
        if not token.expires_within(self.refresh_margin, now=self._now()):
            return token.access_token
        return self._refresh(stale=token.access_token, forced=False)

    def force_refresh(self, stale: str) -> str:
        """See TokenProvider.force_refresh."""
        return self._refresh(stale=stale, forced=True)

    def _load(self) -> StoredToken:
        self._cached = self.store.load()
        return self._cached

    def _usable(self, state: StoredToken) -> Token:
        if state.status == REAUTHORIZATION_NEEDED:
            raise ReauthorizationNeededError("The connection must be re-authorized")
        if state.token is None:
            raise ReauthorizationNeededError("The connection has not been authorized yet")
        return state.token

    def _refresh(self, *, stale: str, forced: bool) -> str:
        refused_grant: list[ReauthorizationNeededError] = []

        def change(current: StoredToken) -> Token | None:
            token = self._usable(current)
            if token.access_token != stale and not token.expires_within(
                self.refresh_margin, now=self._now()
            ):
                return None  # another refresher won the race: use its token
            if token.refresh_token is None:
                raise ReauthorizationNeededError(
                    "The access token expired and the grant has no refresh token "
                    "(was offline_access granted?)"
                )
            try:
                new = self.oauth.refresh(token.refresh_token)
            except SegmentExportError as exc:
                self.on_refresh(False)
                if isinstance(exc, ReauthorizationNeededError):
                    refused_grant.append(exc)
                raise
            self.on_refresh(True)
            if new.refresh_token is None:  # long-lived refresh tokens may not come back
                new = replace(new, refresh_token=token.refresh_token)
            log.info(
                "refreshed the access token (%s); it expires at %s",
                "after a 401" if forced else "before expiry",
                new.expires_at.isoformat(),
            )
            return new

        with self._lock:
            try:
                state = self.store.update(change)
            except ReauthorizationNeededError as exc:
                if refused_grant:
                    self.store.mark_reauthorization_needed(str(exc))
                self._cached = None
                raise
            self._cached = state
        return self._usable(state).access_token


__all__ = [
    "CONNECTED",
    "DEFAULT_REFRESH_MARGIN",
    "REAUTHORIZATION_NEEDED",
    "InMemoryTokenStore",
    "RefreshingTokenProvider",
    "StaticTokenProvider",
    "StoredToken",
    "TokenChange",
    "TokenProvider",
    "TokenStore",
    "save_token",
]
