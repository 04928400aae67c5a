"""Password checks are throttled, so that guessing a password stays slow.

Every check of a password (signing in, and the current password asked again on Your account)
is counted *before* the password is verified, in one atomic increment-and-compare per bucket,
so parallel requests cannot all pass a check made before any of them is counted:

- per account and client (the account name with the client's address): 5 failures in 15
  minutes; the key includes the address, so nobody can lock an account out for everyone by
  failing on purpose from their own machine;
- per client: 30 failures in 15 minutes across every name, which stops a sweep over many
  names from one address (an office behind one address shares it).

A password that turns out right gives its count back (and clears the account-and-client
bucket); a wrong one stays counted. Counts live in this process by default, in Redis when
``SEGMENT_EXPORT_REDIS_URL`` is set (then every web process shares them). The client's address
is the connecting peer's, or the one a trusted reverse proxy names
(``SEGMENT_EXPORT_TRUSTED_PROXIES``); an IPv6 client counts as its /64 network, which one
subscriber usually holds whole.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from segment_export.errors import RetriableError
from segment_export.languages import N_

log = logging.getLogger(__name__)

PER_ACCOUNT = parse("5/15 minutes")
"""Failed password checks for one account from one client address."""
PER_CLIENT = parse("30/15 minutes")
"""Failed password checks from one client address, whatever the account."""
IPV6_PREFIX = 64


class TooManyAttemptsError(RetriableError):
    """Too many wrong passwords from this client: no password is checked until ``retry_after``."""

    hint = "Wait until the time given, then try again."


class ThrottleUnavailableError(RetriableError):
    """The store of the counts (Redis) cannot be reached: no password is checked, since an
    uncounted check would let guessing run unthrottled (it fails closed)."""

    hint = "Try again in a minute; an admin should check that Redis is running."


def client_key(host: str | None) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 by its /64 network."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Not an address (a proxy passing something odd along): counted by its hash.
        return "other:" + hashlib.sha256(host.encode()).hexdigest()[:16]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def _account_key(account: str) -> str:
    # Hashed: user names (and what people type instead of them) never sit in Redis.
    return hashlib.sha256(account.strip().casefold().encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A password check the throttle let through. It stays counted as a failure unless
    :meth:`succeeded` is called."""

    throttle: SignInThrottle
    account: str
    client: str

    def succeeded(self) -> None:
        """The password was right: the account's count from this client ends, and this
        attempt no longer counts against the client."""
        self.throttle._settle(self.account, self.client)


class SignInThrottle:
    """Counts password checks per (account, client) and per client; refuses past the limits."""

    def __init__(self, storage_url: str | None = None) -> None:
        # wrap_exceptions: a Redis outage arrives as one StorageError, whatever its cause.
        storage = storage_from_string(storage_url, key_prefix="segment-export:sign-in",
                                      wrap_exceptions=True) \
            if storage_url else storage_from_string("memory://")
        assert isinstance(storage, Storage)  # the synchronous kind, for these URLs
        self._storage = storage
        self._limiter = FixedWindowRateLimiter(self._storage)

    def _buckets(self, account: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        # The client first: a client over its limit never creates account buckets (memory).
        return [(PER_CLIENT, ("client", client)),
                (PER_ACCOUNT, ("account", _account_key(account), client))]

    def attempt(self, account: str, client: str) -> Attempt:
        """Count one password check of ``account`` from ``client`` before it is made.

        Raises TooManyAttemptsError, with the seconds to wait, when either bucket is full; a
        refused attempt is not counted.
        """
        try:
            return self._attempt(account, client)
        except StorageError as exc:
            log.error("sign-in refused: the sign-in counts cannot be reached (%s)", exc)
            raise ThrottleUnavailableError(
                N_("Signing in is unavailable for a moment: the store of sign-in attempts "
                   "cannot be reached. Try again shortly.")) from None

    def _attempt(self, account: str, client: str) -> Attempt:
        taken: list[tuple[RateLimitItem, tuple[str, ...]]] = []
        for limit, identifiers in self._buckets(account, client):
            # hit() increments and compares in one step (a lock in memory, INCRBY in Redis).
            if not self._limiter.hit(limit, *identifiers):
                wait = self._seconds_left(limit, identifiers)
                for given in [*taken, (limit, identifiers)]:
                    self._give_back(*given)
                raise TooManyAttemptsError(
                    N_("Too many wrong passwords from your address. Try again in %(minutes)s."),
                    values={"minutes": minutes(wait)}, retry_after=wait, limit=str(limit))
            taken.append((limit, identifiers))
        return Attempt(self, account, client)

    def _settle(self, account: str, client: str) -> None:
        client_bucket, account_bucket = self._buckets(account, client)
        try:
            self._storage.clear(account_bucket[0].key_for(*account_bucket[1]))
            self._give_back(*client_bucket)
        except StorageError as exc:
            # The password was right; the attempt merely stays counted until its window ends.
            log.warning("a right password's attempt could not be given back (%s)", exc)

    def _give_back(self, limit: RateLimitItem, identifiers: tuple[str, ...]) -> None:
        # Should the window have ended since the hit (it lasts 15 minutes from the first
        # failure), this leaves a credit of one attempt for the next window: harmless.
        self._storage.incr(limit.key_for(*identifiers), limit.get_expiry(), amount=-1)

    def _seconds_left(self, limit: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        reset_at: Any = self._storage.get_expiry(limit.key_for(*identifiers))
        return max(1, math.ceil(float(reset_at) - time.time()))

    def wait_seconds(self, account: str, client: str) -> int:
        """0 when a password check of ``account`` from ``client`` may be made now; else the
        seconds until one may (a read: nothing is counted)."""
        try:
            waits = [self._seconds_left(limit, ids)
                     for limit, ids in self._buckets(account, client)
                     if not self._limiter.test(limit, *ids)]
        except StorageError as exc:
            raise ThrottleUnavailableError(
                N_("The store of sign-in attempts cannot be reached. Try again shortly.")) from exc
        return max(waits, default=0)


def minutes(seconds: float) -> str:
    """``seconds`` rounded up to whole minutes, in words."""
    whole = max(1, math.ceil(seconds / 60))
    return "1 minute" if whole == 1 else f"{whole} minutes"
