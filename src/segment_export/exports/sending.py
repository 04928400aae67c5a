"""Stage 5 of a run: send import batches, learn their outcome, record what was delivered.

Activities are confirmed several at a time with one listing request instead of one poll per
activity, so the request budget goes to imports; what a batch delivered is one packed row,
written as the batch is confirmed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import Engine, insert, select, update

from segment_export.constant_contact import Activity, ConstantContactClient, ImportBatch
from segment_export.db.models import RunBatch
from segment_export.errors import RetriableError
from segment_export.exports.delivery import BatchMembers, read_verdict, record_delivered

log = logging.getLogger(__name__)

# Imports in flight before one is confirmed: enough that one listing confirms several, few
# enough that a crash leaves little to re-check (and far below 1,000 queued activities).
MAX_OUTSTANDING = 8
LISTING_LIMIT = 500
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "timed_out"})


@dataclass(slots=True)
class InFlight:
    batch_id: int
    activity_id: str
    # Whom the batch carries; None: read back from the batch's row when it is settled. A run
    # sending keeps none in memory (about 2.3 MB a batch, up to MAX_OUTSTANDING of them,
    # allocated among the body thread's transient buffers), only what the row already holds.
    members: BatchMembers | None = None


class Sender:
    """Sends one run's imports and settles them; use as a context manager."""

    def __init__(self, *, engine: Engine, client: ConstantContactClient, run_id: str,
                 export_id: str, poll_interval: float,
                 on_settled: Callable[[int], None] = lambda n: None,
                 timing: Callable[[str, float], None] = lambda stage, started: None,
                 between_polls: Callable[[], None] = lambda: None) -> None:
        self.engine = engine
        self.client = client
        self.run_id = run_id
        self.export_id = export_id
        self.poll_interval = poll_interval
        self.on_settled = on_settled
        self.timing = timing
        # Called before each wait for an activity still processing; it may raise to stop
        # waiting (a cancel), leaving what is unsettled to the export's next run.
        self.between_polls = between_polls
        self.in_flight: dict[str, InFlight] = {}

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def send(self, batch: ImportBatch, members: BatchMembers, *, seq: int) -> None:
        """Record the batch, send it, and settle older ones when too many are in flight."""
        with self.engine.begin() as conn:
            batch_id = conn.execute(insert(RunBatch).values(
                run_id=self.run_id, seq=seq, kind="import", state="pending",
                contacts=batch.count, nbytes=batch.nbytes, members=members.pack(),
            ).returning(RunBatch.id)).scalar_one()
        started = time.perf_counter()
        activity = self.client.import_contacts(batch.body)
        self.timing("upload", started)
        with self.engine.begin() as conn:
            conn.execute(update(RunBatch).where(RunBatch.id == batch_id).values(
                state="sent", activity_id=activity.activity_id))
        self.adopt(InFlight(batch_id, activity.activity_id))
        if len(self.in_flight) >= MAX_OUTSTANDING:
            self.settle(until_empty=False)

    def adopt(self, flight: InFlight) -> None:
        """Take over a batch sent earlier (by a previous attempt) to settle it."""
        self.in_flight[flight.activity_id] = flight

    def settle(self, *, until_empty: bool = True, tolerate_failures: bool = False) -> None:
        """Confirm finished activities: all of them, or (``until_empty=False``) at least one.

        A failed, cancelled or timed-out activity raises RetriableError (its contacts count as
        undelivered and the retry sends them again) unless ``tolerate_failures``.
        """
        while self.in_flight:
            started = time.perf_counter()
            found = self._look_up()
            self.timing("poll", started)
            settled = 0
            for activity_id, activity in found.items():
                if activity.state in TERMINAL_STATES and activity_id in self.in_flight:
                    self._settle_one(self.in_flight.pop(activity_id), activity,
                                     tolerate_failures=tolerate_failures)
                    settled += 1
            if self.in_flight and (until_empty or not settled):
                self.between_polls()
                time.sleep(self.poll_interval)
            elif not until_empty:
                return

    def members_of(self, flight: InFlight) -> BatchMembers:
        """Whom an in-flight batch carries: as adopted, or as :meth:`send` stored them on the
        batch's row."""
        if flight.members is not None:
            return flight.members
        with self.engine.connect() as conn:
            blob = conn.execute(select(RunBatch.members).where(
                RunBatch.id == flight.batch_id)).scalar_one()
        members = BatchMembers.unpack(blob) if blob is not None else None
        if members is None:
            raise RuntimeError(f"batch {flight.batch_id} lost the members it was sent with")
        return members

    def _look_up(self) -> dict[str, Activity]:
        return look_up_activities(self.client, self.in_flight)

    def _settle_one(self, flight: InFlight, activity: Activity, *,
                    tolerate_failures: bool) -> None:
        if activity.state != "completed":
            with self.engine.begin() as conn:
                conn.execute(update(RunBatch).where(RunBatch.id == flight.batch_id).values(
                    state="failed", errors=activity.activity_errors[:50]))
            message = (f"Constant Contact's import activity {flight.activity_id} ended "
                       f"{activity.state}")
            if tolerate_failures:
                log.warning("%s; its contacts are sent again", message)
                return
            raise RetriableError(message, activity_id=flight.activity_id)
        started = time.perf_counter()
        members = self.members_of(flight)
        verdict = read_verdict(activity, len(members))
        if verdict.rejected and not activity.activity_errors:
            # A listing may leave out the error texts; the activity itself has them.
            verdict = read_verdict(self.client.get_activity(flight.activity_id), len(members))
        record_delivered(self.engine, export_id=self.export_id, run_id=self.run_id,
                         batch_id=flight.batch_id, members=members, verdict=verdict)
        self.timing("record", started)
        self.on_settled(len(members))


def look_up_activities(client: ConstantContactClient,
                       activity_ids: Collection[str]) -> dict[str, Activity]:
    """The current state of each of ``activity_ids``: one ``GET /activities/{id}`` for a single
    one; for several, one listing (newest first, with states and counts) and a single GET
    only for those older than the listing reaches."""
    if len(activity_ids) == 1:
        (activity_id,) = activity_ids
        return {activity_id: client.get_activity(activity_id)}
    listed = {a.activity_id: a for a in islice(
        client.list_activities(limit=LISTING_LIMIT), LISTING_LIMIT)
        if a.activity_id in activity_ids}
    for activity_id in activity_ids:
        if activity_id not in listed:
            listed[activity_id] = client.get_activity(activity_id)
    return listed
