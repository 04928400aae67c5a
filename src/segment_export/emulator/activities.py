"""Bulk activities: created ``initialized``, then ``processing``, then ``completed`` (or an
injected ``failed`` / ``timed_out``), advanced lazily from the clock whenever state is read."""

from __future__ import annotations

import heapq
import itertools
from enum import StrEnum
from typing import Any, Literal

from segment_export.emulator.models import iso, new_id

Outcome = Literal["completed", "failed", "timed_out"]
TERMINAL_STATES = frozenset({"completed", "failed", "timed_out", "cancelled"})
# Share of an activity's time spent initialized before it starts processing.
_INITIALIZED_SHARE = 0.2


class ActivityKind(StrEnum):
    """What an activity does; the value is the endpoint that creates it."""

    IMPORT = "contacts_json_import"
    ADD_MEMBERSHIPS = "add_list_memberships"
    REMOVE_MEMBERSHIPS = "remove_list_memberships"
    EXPORT = "contact_exports"
    LIST_DELETE = "list_delete"


class Activity:
    """One activity; its effect is applied by the backend when it comes due (never before)."""

    __slots__ = (
        "activity_id",
        "client_id",
        "created_at",
        "due_at",
        "errors",
        "finished_at",
        "kind",
        "outcome",
        "payload",
        "rejections",
        "result",
        "started_at",
        "status",
    )

    def __init__(
        self,
        *,
        kind: ActivityKind,
        created_at: float,
        duration: float,
        outcome: Outcome,
        payload: Any,
        status: dict[str, int],
        client_id: str | None,
    ) -> None:
        self.activity_id = new_id()
        self.kind = kind
        self.created_at = created_at
        self.started_at = created_at + duration * _INITIALIZED_SHARE
        self.due_at = created_at + duration
        self.outcome: Outcome = outcome
        self.payload = payload
        self.status = status
        self.client_id = client_id
        self.errors: list[str] = []
        self.rejections: list[Any] = []  # an import's refused rows, for the control API only
        self.finished_at: float | None = None
        self.result: bytes | None = None

    def state(self, now: float) -> str:
        """The state at ``now`` (the backend finishes due activities before anyone reads them)."""
        if self.finished_at is not None:
            return self.outcome
        return "processing" if now > self.started_at else "initialized"

    def percent_done(self, now: float) -> int:
        """Progress at ``now``, from 0 to 100."""
        if self.finished_at is not None:
            return 100
        if now < self.started_at or self.due_at <= self.started_at:
            return 0
        return min(99, int(100 * (now - self.started_at) / (self.due_at - self.started_at)))

    def finish(self, *, errors: list[str] | None = None, result: bytes | None = None) -> None:
        """Mark it finished with its outcome, at its due time."""
        self.finished_at = self.due_at
        if errors:
            self.errors = errors
        self.result = result
        self.payload = None  # the input is no longer needed; do not hold 40,000 rows for days

    def to_json(self, now: float) -> dict[str, Any]:
        """The activity as Constant Contact renders it (``Activity`` in the contract)."""
        state = self.state(now)
        body: dict[str, Any] = {
            "activity_id": self.activity_id,
            "state": state,
            "created_at": iso(self.created_at),
        }
        if state != "initialized":
            body["started_at"] = iso(self.started_at)
        if self.finished_at is not None:
            body["completed_at"] = iso(self.finished_at)
            body["updated_at"] = iso(self.finished_at)
        else:
            body["updated_at"] = iso(max(self.created_at, min(now, self.due_at)))
        body["percent_done"] = self.percent_done(now)
        body["activity_errors"] = list(self.errors)
        body["status"] = dict(self.status)
        links: dict[str, Any] = {"self": {"href": f"/v3/activities/{self.activity_id}"}}
        if self.kind is ActivityKind.EXPORT and state == "completed":
            links["results"] = {"href": f"/v3/contact_exports/{self.activity_id}"}
        body["_links"] = links
        return body


class ActivityQueue:
    """Every activity of the account, plus the unfinished ones ordered by due time."""

    def __init__(self) -> None:
        self._all: dict[str, Activity] = {}
        self._pending: list[tuple[float, int, Activity]] = []
        self._seq = itertools.count()

    def submit(self, activity: Activity) -> Activity:
        """Queue ``activity``."""
        self._all[activity.activity_id] = activity
        heapq.heappush(self._pending, (activity.due_at, next(self._seq), activity))
        return activity

    def pop_due(self, now: float) -> Activity | None:
        """The next unfinished activity due by ``now`` (earliest first), or None."""
        if self._pending and self._pending[0][0] <= now:
            return heapq.heappop(self._pending)[2]
        return None

    @property
    def queued(self) -> int:
        """Activities not finished yet (Constant Contact allows 1,000 per account)."""
        return len(self._pending)

    def purge(self, older_than: float) -> None:
        """Forget finished activities created before ``older_than`` (kept 10 days by default)."""
        for activity_id, activity in list(self._all.items()):
            if activity.created_at >= older_than:
                break  # insertion order is creation order
            if activity.finished_at is not None:
                del self._all[activity_id]

    def get(self, activity_id: str) -> Activity | None:
        """One activity by id."""
        return self._all.get(activity_id)

    def newest_first(self) -> list[Activity]:
        """All activities, most recent first."""
        return list(reversed(self._all.values()))

    def __len__(self) -> int:
        return len(self._all)
