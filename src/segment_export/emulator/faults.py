"""Injected faults: the next N matching requests answer 429/500/503, answer slowly, or lose
their connection before, during (mid-upload) or after the request is processed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from starlette.types import Receive, Send

from segment_export.emulator.errors import MESSAGES, THROTTLED_BODY

FaultKind = Literal["status", "slow", "drop"]
When = Literal["before", "during", "after"]
_FAULT_KEYS = {
    429: "throttled",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
FAULT_STATUSES = frozenset(_FAULT_KEYS)


def fault_body(status: int) -> Any:
    """The body Constant Contact sends with ``status`` (429 is one object, the rest arrays)."""
    if status == 429:
        return dict(THROTTLED_BODY)
    message = MESSAGES.get(status, "Our internal service is temporarily unavailable.")
    return [{"error_key": _FAULT_KEYS[status], "error_message": message}]


@dataclass(slots=True)
class Fault:
    """``remaining`` more requests whose path starts with ``path_prefix`` meet this fault.

    ``when="before"``: the request is not processed. ``"during"`` (drops only): the connection
    is cut after the first part of the body arrived, while the client may still be uploading;
    nothing is processed. ``"after"``: it is processed (an import is accepted, a token rotated)
    and then the response is replaced, delayed or lost.
    """

    kind: FaultKind
    remaining: int = 1
    status: int = 503
    delay: float = 0.0
    path_prefix: str = "/v3"
    when: When = "before"
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether a request of ``method`` to ``path`` meets this fault."""
        if self.method is not None and self.method.upper() != method:
            return False
        return path.startswith(self.path_prefix)

    @property
    def label(self) -> str:
        """How the request log names it: ``status:503``, ``slow``, ``drop:during``..."""
        detail = f":{self.status}" if self.kind == "status" else ""
        return f"{self.kind}{detail}" + ("" if self.when == "before" else f":{self.when}")

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the control API."""
        return asdict(self)


class FaultPlan:
    """Faults waiting for requests, used first-injected first; not thread-safe (backend locks)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue ``fault``."""
        self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, with one use consumed; or None."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> list[Fault]:
        """Faults still waiting."""
        return list(self._faults)

    def clear(self) -> None:
        """Drop every waiting fault."""
        self._faults.clear()


async def drop_connection(send: Send, receive: Receive) -> None:
    """Close the client's connection without a response.

    ASGI has no message for this, so the transport is reached through uvicorn's ``send`` (a
    bound method of its request cycle) and aborted; then we wait for uvicorn to notice, so it
    does not try to answer with a 500 of its own.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("drop faults need the emulator to run under uvicorn (h11)")
    transport.abort()
    while (await receive())["type"] != "http.disconnect":
        pass
