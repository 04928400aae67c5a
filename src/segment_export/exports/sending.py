"""Stage 5 of a run: send import batches, learn their outcome, record what was delivered.

Activities are confirmed several at a time with one listing request instead of one poll per
activity, so the request budget goes to imports; what a batch delivered is one packed row,
written as the batch is confirmed. Requests go one at a time from the sender's thread; the
writes that follow a request (the activity's id, what a settled batch delivered) are made in
order by a recorder thread, so the next request never waits for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from itertools import islice
from types import TracebackType

from sqlalchemy import Engine, insert, select, update

from segment_export.constant_contact import Activity, ConstantContactClient, ImportBatch
from segment_export.db.models import RunBatch
from segment_export.errors import RetriableError
from segment_export.exports.delivery import BatchMembers, Verdict, read_verdict, record_delivered

log = logging.getLogger(__name__)

# Imports in flight before some are confirmed. Each listing takes a request of the rate
# budget from the imports, while recording what it confirmed runs beside them: so list
# seldom (a 1 M export's 24 imports need one listing midway and one at the end), yet a
# crash leaves few to re-check (one listing covers 500) and far below 1,000 queued activities.
MAX_OUTSTANDING = 16
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
    # How many contacts the batch carries (None: as many as ``members``).
    size: int | None = None

    def __len__(self) -> int:
        if self.size is not None:
            return self.size
        assert self.members is not None, "an in-flight batch needs its size or its members"
        return len(self.members)


class Recorder:
    """Runs database writes one after another on a thread of its own, in submission order.

    A write that fails stops the ones after it (they are dropped, so nothing is written out of
    order) and its exception is raised on the submitting thread by :meth:`check` or
    :meth:`wait`. A crash that loses writes still queued loses nothing of substance: a batch
    sent but not marked so stays ``pending`` and a settled one stays ``sent``, and the next
    run settles them as left-overs.
    """

    def __init__(self, name: str = "record-batches") -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; raise the exception of an earlier one that failed."""
        self.check()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def check(self) -> None:
        """Raise the exception of a job that failed, if one did."""
        if self._error is not None:
            raise self._error

    def wait(self) -> None:
        """Wait until every job submitted is done; raise the first one's exception."""
        if self._thread is not None:
            self._jobs.join()
        self.check()

    def close(self) -> None:
        """Do every job submitted, then stop the thread (raise as :meth:`wait`)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()
        self.check()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                self._jobs.task_done()
                return
            try:
                if self._error is None:
                    job()
            except BaseException as error:  # raised on the sender's thread
                self._error = error
            finally:
                self._jobs.task_done()


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
        self.recorder = Recorder()
        # Contacts of the batches the recorder has recorded, reported by the sender's thread.
        self._recorded: deque[int] = deque()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # Whatever ends the sending, the writes already queued are facts (a batch was sent, a
        # batch was confirmed): they are made before the run goes on or stops.
        try:
            self.recorder.close()
        except BaseException as failed:
            if kind is None:
                raise
            if failed is not error:  # not the one already on its way up
                log.warning("recording a batch failed as the sending stopped: %r", failed)
        self._report_recorded()

    def send(self, batch: ImportBatch, members: BatchMembers, *, seq: int) -> None:
        """Record the batch, send it, and settle older ones when too many are in flight."""
        with self.engine.begin() as conn:
            batch_id = conn.execute(insert(RunBatch).values(
                run_id=self.run_id, seq=seq, kind="import", state="pending",
                contacts=batch.count, nbytes=batch.nbytes, members=members.pack(),
            ).returning(RunBatch.id)).scalar_one()
        # A write that failed (a full disk, a lost database) stops the sending here.
        self.recorder.check()
        started = time.perf_counter()
        activity = self.client.import_contacts(batch.body)
        self.timing("upload", started)
        self.recorder.submit(lambda: self._mark_sent(batch_id, activity.activity_id))
        self.adopt(InFlight(batch_id, activity.activity_id, size=len(members)))
        self._report_recorded()
        if len(self.in_flight) >= MAX_OUTSTANDING:
            self.settle(until_empty=False)

    def _mark_sent(self, batch_id: int, activity_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(RunBatch).where(RunBatch.id == batch_id).values(
                state="sent", activity_id=activity_id))

    def adopt(self, flight: InFlight) -> None:
        """Take over a batch sent earlier (by a previous attempt) to settle it."""
        self.in_flight[flight.activity_id] = flight

    def settle(self, *, until_empty: bool = True, tolerate_failures: bool = False) -> None:
        """Confirm finished activities: all of them, or (``until_empty=False``) at least one.

        A failed, cancelled or timed-out activity raises RetriableError (its contacts count as
        undelivered and the retry sends them again) unless ``tolerate_failures``. What settled
        batches delivered is recorded by the recorder thread; when ``until_empty``, all of it
        is recorded before this returns.
        """
        self._settle(until_empty=until_empty, tolerate_failures=tolerate_failures)
        if until_empty:
            self.recorder.wait()
        self._report_recorded()

    def _settle(self, *, until_empty: bool, tolerate_failures: bool) -> None:
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

    def _report_recorded(self) -> None:
        while self._recorded:
            self.on_settled(self._recorded.popleft())

    def _settle_one(self, flight: InFlight, activity: Activity, *,
                    tolerate_failures: bool) -> None:
        if activity.state != "completed":
            # After the batch's queued writes: its ``sent`` must not land over ``failed``.
            self.recorder.wait()
            with self.engine.begin() as conn:
                conn.execute(update(RunBatch).where(RunBatch.id == flight.batch_id).values(
                    state="failed", errors=activity.activity_errors[:50]))
            message = (f"Constant Contact's import activity {flight.activity_id} ended "
                       f"{activity.state}")
            if tolerate_failures:
                log.warning("%s; its contacts are sent again", message)
                return
            raise RetriableError(message, activity_id=flight.activity_id)
        verdict = read_verdict(activity, len(flight))
        if verdict.rejected and not activity.activity_errors:
            # A listing may leave out the error texts; the activity itself has them (asked
            # here: requests go one at a time, from this thread).
            verdict = read_verdict(self.client.get_activity(flight.activity_id), len(flight))
        self.recorder.submit(lambda: self._record(flight, verdict))

    def _record(self, flight: InFlight, verdict: Verdict) -> None:
        started = time.perf_counter()
        members = self.members_of(flight)
        record_delivered(self.engine, export_id=self.export_id, run_id=self.run_id,
                         batch_id=flight.batch_id, members=members, verdict=verdict)
        self.timing("record", started)
        self._recorded.append(len(members))


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
