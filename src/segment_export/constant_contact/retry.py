"""Capped exponential backoff with jitter for passing faults, each wait logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import tenacity

from segment_export.errors import QuotaExhaustedError, RetriableError

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 30.0
DEFAULT_JITTER = 1.0


def is_retriable(exc: BaseException) -> bool:
    """Retry throttling, 5xx and transport faults; never a spent daily quota (it lasts all day)."""
    return isinstance(exc, RetriableError) and not isinstance(exc, QuotaExhaustedError)


class _Backoff(tenacity.wait.wait_base):
    """``base * 2**(attempt-1) + U(0, jitter)``, capped, and never shorter than a Retry-After."""

    def __init__(self, *, base: float, cap: float, jitter: float) -> None:
        self._exp = tenacity.wait_exponential_jitter(multiplier=base, max=cap, jitter=jitter)
        self._cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self._exp(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > wait:
            wait = min(float(retry_after), self._cap)
        return wait


def _log_wait(what: str, max_attempts: int) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.context.get("reason", "") if isinstance(exc, RetriableError) else ""
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "retrying %s in %.2f s (attempt %d of %d failed: %s)",
            what,
            wait,
            state.attempt_number,
            max_attempts,
            exc,
            extra={"retry_reason": reason, "retry_wait": wait, "attempt": state.attempt_number},
        )

    return before_sleep


def retrying(
    *,
    what: str,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base: float = DEFAULT_BACKOFF_BASE,
    cap: float = DEFAULT_BACKOFF_CAP,
    jitter: float = DEFAULT_JITTER,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A retry policy for one call: retriable errors up to ``max_attempts`` tries, then re-raise.

    Use as ``for attempt in retrying(...): with attempt: ...`` or ``retrying(...)(fn)``; the last
    error is raised as itself (not wrapped), so callers see the product's error classes.
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=_Backoff(base=base, cap=cap, jitter=jitter),
        retry=tenacity.retry_if_exception(is_retriable),
        sleep=sleep,
        before_sleep=_log_wait(what, max_attempts),
        reraise=True,
    )


__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_MAX_ATTEMPTS",
    "is_retriable",
    "retrying",
]
