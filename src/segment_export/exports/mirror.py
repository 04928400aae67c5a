"""Mirror mode: take members this export delivered, and who left its segments, off the list.

Only list memberships are removed: never an unsubscribe, never a deleted contact, and never a
contact this export does not own. It owns what its delivered state holds: a contact it sent
and has not removed since. Once one of its removals completed, the contact is no longer its
own, so a person who adds it back by hand keeps it on the list (until it rejoins the segment
and is delivered again). Every removal is recorded (``pending``) before it is sent, so a
resumed run settles what a crashed attempt left in flight instead of guessing from the list.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine, func, insert, select, update

from segment_export.constant_contact import MAX_CONTACT_IDS, Activity, ConstantContactClient
from segment_export.db.models import Export, Run, RunBatch
from segment_export.db.types import utcnow
from segment_export.definitions.phones import SMS_KEY_PREFIX, SMS_REGION, parse_phones
from segment_export.errors import DataError, FatalError, NotFoundError, RetriableError
from segment_export.exports.contact_ids import (
    KeptId,
    forget_contact_ids,
    kept_contact_ids,
    learn_contact_id_bytes,
    uuid_bytes,
)
from segment_export.exports.delivery import (
    RemovalMembers,
    delivered_emails,
    forget_members,
    record_off_list,
    record_removal_unsettled,
    record_removed,
)
from segment_export.exports.dependencies import RunCancelled
from segment_export.exports.diff import Delivered, fingerprints, leavers, sorted_member
from segment_export.exports.sending import look_up_activities
from segment_export.languages import N_

if TYPE_CHECKING:
    from segment_export.exports.dependencies import RunDependencies

log = logging.getLogger(__name__)
# Up to this many leavers are looked up one email at a time; beyond it one contact export of
# the list costs fewer requests than a lookup each.
LOOKUP_ONE_BY_ONE = 40
# Constant Contact's clock and this host's may disagree: the contacts updated since a kept id
# was learnt are asked for from this much earlier.
CLOCK_SKEW_MARGIN = timedelta(minutes=5)
# Contacts a page of ``GET /contacts`` holds at most.
CONTACTS_PER_PAGE = 500
# Pages of the list's updated contacts worth listing to keep using kept ids: the list's contact
# export, which relearns them, takes 3 requests (create, a poll, the download) and the download
# of the whole list; paging through every updated contact of a large list instead took one
# request per 500 of them (1,853 requests, 8 minutes, for a list of 926,000 that a run had just
# updated).
UPDATED_LISTING_PAGES = 4
# Removal activities that end failed are retried within the attempt this many times, each time
# for only those of their contacts still on the list; then the run is retried.
REMOVAL_ROUNDS = 3


def normalise_emails(values: Iterable[str | None]) -> list[str]:
    """Emails as validation normalises the ones this export sends (trimmed, lower-cased by
    Arrow): an address Constant Contact returns is compared in the same form."""
    array = pa.array([v or "" for v in values], pa.string())
    return [str(v) for v in pc.utf8_lower(pc.utf8_trim_whitespace(array)).to_pylist()]


def _needs_export(emails: dict[str, int]) -> bool:
    """Whether looking these leavers up takes the list's contact export (else one by one)."""
    return len(emails) > LOOKUP_ONE_BY_ONE or any(e.startswith(SMS_KEY_PREFIX) for e in emails)


def _contact_ids(client: ConstantContactClient, list_id: str, emails: dict[str, int], *,
                 poll_interval: float,
                 learn: Callable[[np.ndarray[Any, Any], pa.Array], None] | None = None,
                 ) -> tuple[dict[str, str], set[str]]:
    """email -> contact id for the leavers that are on the list now, and the leavers' emails
    that more than one contact on the list answers to.

    When the list's contact export is downloaded, ``learn`` is given the email key (of the
    normalised address) and contact id of every row with an address, so the ids of the
    export's other members are kept for later runs. SMS-only contacts' ids are not: such a
    contact may have been given an email since (an import of an email member with that
    number merges into it), and removing it by a kept id would take that member off.

    A contact counts only if its own address, normalised, is the leaver's email: a lookup is
    never trusted to have filtered (an empty ``email`` filter is no filter: it pages through
    the whole list). Constant Contact keeps one contact per address, so an email two contacts
    answer to is a surprise: which of them this export delivered cannot be told, and neither
    is removed (nor forgotten: a later run looks again).
    """
    wanted = {email for email in emails if email}
    sms_wanted = {key for key in wanted if key.startswith(SMS_KEY_PREFIX)}
    found: dict[str, set[str]] = {}

    def match(pairs: list[tuple[str, str | None]]) -> None:
        addresses = normalise_emails(address for _, address in pairs)
        for (contact_id, _), address in zip(pairs, addresses, strict=True):
            if address in wanted and contact_id:
                found.setdefault(address, set()).add(contact_id)

    # An SMS-only contact cannot be looked up by email: the list's export finds it by number.
    if not _needs_export(emails):
        for email in wanted:
            match([(c.contact_id, c.email)
                   for c in client.find_contacts(email=email, lists=[list_id], limit=50)])
    else:
        fields = ["contact_id", "email_address", *(["sms_number"] if sms_wanted else [])]
        activity = client.create_contact_export(list_ids=[list_id], fields=fields)
        done = client.wait_for_activity(activity.activity_id, poll_interval=poll_interval)
        if done.state != "completed" or done.links.results is None:
            raise RetriableError(N_("Contact export %(activity_id)s ended %(state)s"),
                                 values={"activity_id": activity.activity_id, "state": done.state})
        wanted_set = pa.array(sorted(wanted), pa.string())
        # Downloaded into an anonymous file (gone with the process, even after kill -9) and
        # parsed from it a block at a time: only one block's columns are held at once, never
        # the list's bytes nor the whole list as a table.
        with tempfile.TemporaryFile() as data, duckdb.connect() as con:
            client.download_contact_export_csv_into(done.links.results.href, data)
            for table in _read_export(data, sms=bool(sms_wanted)):
                _match_block(table, wanted_set, sms_wanted, match, found, learn, con)
    ids = {email: next(iter(c)) for email, c in found.items() if len(c) == 1}
    ambiguous = {email for email, c in found.items() if len(c) > 1}
    if ambiguous:
        log.warning("mirror: %d leavers' emails each match several contacts on the list; "
                    "none of those is removed", len(ambiguous))
    return ids, ambiguous


def _match_block(table: pa.Table | pa.RecordBatch, wanted: pa.Array, sms_wanted: set[str],
                 match: Callable[[list[tuple[str, str | None]]], None],
                 found: dict[str, set[str]],
                 learn: Callable[[np.ndarray[Any, Any], pa.Array], None] | None,
                 con: duckdb.DuckDBPyConnection) -> None:
    """Match one block of the list's export against the leavers (and learn its ids)."""
    ids_column = table.column("contact_id")
    addresses = table.column("email_address" if "email_address" in table.column_names
                             else "email")
    # Vectorised: normalise every address, keep the rows whose address is a leaver's; only
    # those become Python objects.
    normalised = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(addresses, "")))
    hit = pc.is_in(normalised, value_set=wanted)
    match(list(zip(pc.fill_null(ids_column.filter(hit), "").to_pylist(),
                   addresses.filter(hit).to_pylist(), strict=True)))
    if learn is not None:
        has_address = pc.not_equal(normalised, "")
        keys, _ = fingerprints(pa.table({"email": normalised.filter(has_address)}), con=con)
        learn(keys, ids_column.filter(has_address))
    if not sms_wanted:
        return
    # Only a contact that is still SMS-only is the one this export made: one that has an
    # email since is someone's email contact, never removed as an SMS-only leaver.
    bare = pc.and_(pc.equal(normalised, ""), pc.is_valid(table.column("sms_number")))
    numbers = parse_phones(table.column("sms_number").filter(bare), region=SMS_REGION)
    for contact_id, e164 in zip(ids_column.filter(bare).to_pylist(),
                                numbers.e164.to_pylist(), strict=True):
        key = f"{SMS_KEY_PREFIX}{e164}"
        if e164 and contact_id and key in sms_wanted:
            found.setdefault(key, set()).add(contact_id)


# The list's export is parsed in blocks of about this many bytes (~15,000 rows of ids and
# emails).
_EXPORT_BLOCK_BYTES = 1 << 20


def _read_export(data: bytes | BinaryIO, *, sms: bool = False) -> Iterator[pa.RecordBatch]:
    """A contact export's CSV (its bytes, or a file holding them), a block at a time, as
    strings (contact_id and the email column, and with ``sms`` the ``sms_number`` column)."""
    extra = ["sms_number"] if sms else []
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    source.seek(0)
    header = source.readline()
    if not header.strip() and not _has_text(source):
        return
    names = [n.strip('"') for n in header.decode().strip().split(",")]
    source.seek(0)
    email = "email_address" if "email_address" in names else "email"
    if sms and "sms_number" not in names:
        raise RetriableError(N_("The list's contact export has no sms_number column; SMS-only "
                                "leavers cannot be found"))
    wanted = ["contact_id", email, *extra]
    yield from pacsv.open_csv(
        pa.PythonFile(source, mode="r"),
        read_options=pacsv.ReadOptions(block_size=_EXPORT_BLOCK_BYTES, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string()),
            strings_can_be_null=True, quoted_strings_can_be_null=False))


def _has_text(source: BinaryIO) -> bool:
    """Whether the rest of ``source`` holds anything but whitespace (read a block at a time)."""
    while block := source.read(1 << 20):
        if block.strip():
            return True
    return False


def _next_seq(engine: Engine, run_id: str) -> int:
    """Removal batches are numbered per run, across its attempts."""
    with engine.connect() as conn:
        last = conn.execute(select(func.max(RunBatch.seq)).where(
            RunBatch.run_id == run_id, RunBatch.kind == "remove")).scalar()
    return 0 if last is None else int(last) + 1


def settle_left_over_removals(deps: RunDependencies, client: ConstantContactClient, *,
                              run_id: str, export_id: str,
                              check_cancel: Callable[[], None] = lambda: None) -> None:
    """After a crash or a lost answer: settle the removals an earlier attempt of the run
    recorded but never confirmed, before anything reads the delivered state.

    A removal whose activity completed forgets its leavers (so a contact put back by hand
    since stays); one that failed, or whose activity cannot be found or was never named (the
    answer to the request was lost), keeps them as uncertain members: this run removes those
    still on the list and sends again those who rejoined the segment.
    """
    with deps.sessions() as session:
        left = session.scalars(select(RunBatch).where(
            RunBatch.run_id == run_id, RunBatch.kind == "remove",
            RunBatch.state.in_(("pending", "sent"))).order_by(RunBatch.id)).all()
    for batch in left:
        members = RemovalMembers.unpack(batch.members)
        if members is None:  # purged details: nothing left to settle it with
            with deps.engine.begin() as conn:
                conn.execute(update(RunBatch).where(RunBatch.id == batch.id).values(
                    state="unknown"))
            continue
        if batch.activity_id is None:
            log.warning("mirror: removal #%d of run %s was sent without an answer; its %d "
                        "contacts are checked on the list again", batch.seq, run_id, len(members))
            record_removal_unsettled(deps.engine, export_id=export_id, run_id=run_id,
                                     batch_id=batch.id, members=members, state="unknown")
            continue
        try:
            done = client.wait_for_activity(batch.activity_id, poll_interval=deps.poll_interval,
                                            should_cancel=_raising(check_cancel))
        except NotFoundError:
            record_removal_unsettled(deps.engine, export_id=export_id, run_id=run_id,
                                     batch_id=batch.id, members=members, state="unknown")
            continue
        if done.state == "completed" and not removal_short(done, len(members)):
            record_removed(deps.engine, export_id=export_id, batch_id=batch.id, members=members)
        else:
            if done.state == "completed":  # an id it named was not found: trust none
                with deps.sessions() as session:
                    export = session.get(Export, export_id)
                    list_id = export.list_id if export is not None else ""
                forget_contact_ids(deps.engine, export_id=export_id, list_id=list_id,
                                   keys=members.keys)
            record_removal_unsettled(deps.engine, export_id=export_id, run_id=run_id,
                                     batch_id=batch.id, members=members, state="failed",
                                     errors=done.activity_errors)


def removal_short(done: Activity, sent: int) -> bool:
    """Whether a completed removal says it did not do every contact it named: fewer counted
    done than sent, or errors (the emulator names each id it did not find; what Constant
    Contact says is UNVERIFIED, and a removal without counts is taken at its word)."""
    completed = done.status.items_completed_count
    return bool(done.activity_errors) or (completed is not None and completed < sent)


def _raising(check_cancel: Callable[[], None]) -> Callable[[], bool]:
    """A ``should_cancel`` for ``wait_for_activity`` that lets ``check_cancel`` raise (a
    cancel, a shutdown) between polls instead of answering."""

    def should_cancel() -> bool:
        check_cancel()
        return False

    return should_cancel


def remove_leavers(
    deps: RunDependencies,
    client: ConstantContactClient,
    *,
    run_id: str,
    export: Export,
    delivered: Delivered,
    current_keys: np.ndarray[Any, Any],
    check_cancel: Callable[[], None],
) -> dict[str, int]:
    """Remove the leavers from the export's list; return the run's removal counts (over all
    its attempts: ``left_segment = removed + already_off_list``)."""
    gone = leavers(delivered, current_keys)
    emails = _not_members(deps, export.id,
                          delivered_emails(deps.engine, export.id, gone) if gone.size else {},
                          current_keys)
    # The keys, id validity and 16 id bytes each block of the list's export showed.
    seen: tuple[list[np.ndarray[Any, Any]], ...] = ([], [], [])

    def learn(keys: np.ndarray[Any, Any], ids: pa.Array) -> None:
        # Only the export's own members: the list's other contacts are not its to remove.
        # (Kept as 16 bytes an id, block by block: never the whole list's ids as text.)
        mine = sorted_member(keys, delivered.keys)
        valid, raw = uuid_bytes(ids.filter(pa.array(mine)))
        for column, part in zip(seen, (keys[mine], valid, raw), strict=True):
            column.append(part)

    for _ in range(REMOVAL_ROUNDS):
        if not emails:
            break
        # Leavers whose contact id a past export showed are removed by it, without looking
        # them up; the others are looked up on the list (and, if the list's export is needed
        # for them anyway, so are all: what the list shows now wins over what was kept).
        kept_ids = kept_contact_ids(deps.engine, export_id=export.id, list_id=export.list_id,
                                    keys=np.fromiter((k for e, k in emails.items()
                                                      if not e.startswith(SMS_KEY_PREFIX)),
                                                     np.int64))
        if kept_ids and not _needs_export({e: k for e, k in emails.items()
                                           if k not in kept_ids}):
            known = _still_theirs(deps, client, export=export, emails=emails, kept=kept_ids)
        else:  # the list's export is needed anyway, and then no kept id is used
            known = {key: item.contact_id for key, item in kept_ids.items()}
        unknown = {email: key for email, key in emails.items() if key not in known}
        looked_up = (emails if _needs_export(unknown) else unknown) if unknown else {}
        kept = {email: known[key] for email, key in emails.items()
                if key in known and email not in looked_up}
        ids: dict[str, str] = {}
        if looked_up:
            # Before the list's export is asked for: the ids it shows are no older than this.
            asked = utcnow()
            ids, ambiguous = _contact_ids(client, export.list_id, looked_up,
                                          poll_interval=deps.poll_interval, learn=learn)
            if seen[0]:
                learnt = learn_contact_id_bytes(
                    deps.engine, export_id=export.id, list_id=export.list_id,
                    keys=_joined(seen[0]), valid=_joined(seen[1]), raw=_joined(seen[2]),
                    learnt_at=asked)
                log.info("mirror: kept the contact ids of %d members from the list's export",
                         learnt)
            # Leavers no longer on the list (removed by hand, unsubscribed, deleted) need no
            # call.
            record_off_list(deps.engine, export_id=export.id, run_id=run_id,
                            keys=[key for email, key in looked_up.items()
                                  if email not in ids and email not in ambiguous])
        if kept:
            log.info("mirror: %d leavers removed by the contact ids kept for them, %d looked "
                     "up on the list", len(kept), len(looked_up))
        failed = _send_removals(deps, client, run_id=run_id, export=export,
                                pairs=[(emails[e], e, cid) for e, cid in
                                       [*ids.items(), *kept.items()]],
                                check_cancel=check_cancel)
        # A failed removal may have taken some off: next round looks its contacts up again.
        emails = {email: emails[email] for email in failed}
    if emails:
        raise RetriableError(N_("%(count)s leavers' removal activities ended failed "
                                "%(removal_rounds)s times"),
                             values={"count": f"{len(emails):,}", "removal_rounds": REMOVAL_ROUNDS})
    counts = _removal_counts(deps, run_id)
    log.info("mirror: %d left the segment, %d removed, %d already off the list",
             counts["left_segment"], counts["removed"], counts["already_off_list"])
    return counts


def _joined(parts: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """The parts as one array; the list is emptied (each column's parts go as soon as it is
    joined, so a million members' ids are never held twice over)."""
    joined = np.concatenate(parts)
    parts.clear()
    return joined


def _still_theirs(deps: RunDependencies, client: ConstantContactClient, *, export: Export,
                  emails: dict[str, int], kept: dict[int, KeptId]) -> dict[int, str]:
    """key -> contact id for the kept ids that still name their leavers.

    An address edit in Constant Contact keeps the contact's id: the id kept for old@x may be
    new@x's now (a current member, or someone else), and removing it would take the wrong
    person off. So the list's contacts updated since the oldest of these ids was learnt
    (less a margin for clock skew) are listed, and an id among them whose address is no
    longer its leaver's is forgotten: its leaver is looked up on the list. (A kept id whose
    contact is off the list names nobody the removal could take off.) When that listing would
    take more than ``UPDATED_LISTING_PAGES`` pages (its first page's count says so), or cannot
    be had, no kept id is used this run: every leaver is looked up on the list (the list's
    export then relearns the ids).
    """
    since = min(item.learnt_at for item in kept.values()) - CLOCK_SKEW_MARGIN
    pages = UPDATED_LISTING_PAGES
    try:
        updated = client.updated_contacts(updated_after=since, lists=[export.list_id],
                                          max_pages=pages, limit=CONTACTS_PER_PAGE)
    except (DataError, FatalError) as exc:  # a 4xx the listing should not have met
        log.warning("mirror: the contacts updated since %s could not be listed (%s); the "
                    "leavers are looked up on the list", since.isoformat(), exc)
        return {}
    if updated is None:
        log.info("mirror: listing the contacts updated since %s would take more than %d "
                 "pages; the leavers are looked up on the list", since.isoformat(), pages)
        return {}
    email_of = {key: email for email, key in emails.items()}
    current: dict[str, set[str]] = {}
    addresses = normalise_emails(address for _, address in updated)
    for (contact_id, _), address in zip(updated, addresses, strict=True):
        current.setdefault(contact_id, set()).add(address)
    moved = [key for key, item in kept.items()
             if item.contact_id in current and current[item.contact_id] != {email_of.get(key)}]
    if moved:
        log.warning("mirror: %d kept contact ids name contacts whose address changed since "
                    "they were learnt; forgotten, their leavers are looked up on the list",
                    len(moved))
        forget_contact_ids(deps.engine, export_id=export.id, list_id=export.list_id,
                           keys=np.array(moved, np.int64))
    gone = set(moved)
    return {key: item.contact_id for key, item in kept.items() if key not in gone}


def _not_members(deps: RunDependencies, export_id: str, emails: dict[str, int],
                 current_keys: np.ndarray[Any, Any]) -> dict[str, int]:
    """The leavers whose email is not a current member's under the key it has now.

    A delivered key is a hash of the email; should the hash ever change (a DuckDB upgrade),
    a member's old key would look like a leaver while the member is sent under its new one.
    Such a key is forgotten, never removed: its contact is a member.
    """
    if not emails:
        return emails
    names = list(emails)
    keys, _ = fingerprints(pa.table({"email": pa.array(names, pa.string())}))
    member = sorted_member(keys, current_keys)
    if not member.any():
        return emails
    stale = [emails[name] for name, is_member in zip(names, member.tolist(), strict=True)
             if is_member]
    log.warning("mirror: %d delivered keys name current members under another key; "
                "forgotten, not removed", len(stale))
    forget_members(deps.engine, export_id=export_id, keys=stale)
    return {name: emails[name] for name, is_member in zip(names, member.tolist(), strict=True)
            if not is_member}


def _send_removals(deps: RunDependencies, client: ConstantContactClient, *, run_id: str,
                   export: Export, pairs: list[tuple[int, str, str]],
                   check_cancel: Callable[[], None]) -> list[str]:
    """Send the removals, up to 500 contacts each, several in flight, and settle each; the
    emails of those whose activity did not complete."""
    window = _RemovalWindow(deps, client, run_id=run_id, export_id=export.id,
                            list_id=export.list_id)
    try:
        for start in range(0, len(pairs), MAX_CONTACT_IDS):
            check_cancel()
            chunk = pairs[start:start + MAX_CONTACT_IDS]
            members = RemovalMembers.of([k for k, _, _ in chunk], [e for _, e, _ in chunk],
                                        [c for _, _, c in chunk])
            # Recorded before it is sent: a crash from here on leaves a row the next attempt
            # settles, never a removal nobody knows about.
            seq = _next_seq(deps.engine, run_id)
            with deps.engine.begin() as conn:
                batch_id = conn.execute(insert(RunBatch).values(
                    run_id=run_id, seq=seq, kind="remove",
                    state="pending", contacts=len(chunk), members=members.pack(),
                ).returning(RunBatch.id)).scalar_one()
            activity = client.remove_list_memberships([c for _, _, c in chunk],
                                                      [export.list_id])
            with deps.engine.begin() as conn:
                conn.execute(update(RunBatch).where(RunBatch.id == batch_id).values(
                    state="sent", activity_id=activity.activity_id))
            window.add(activity.activity_id, batch_id, members)
    except RunCancelled:
        # Stop sending, but settle what Constant Contact already has.
        window.settle(until_empty=True)
        raise
    window.settle(until_empty=True)
    return window.failed


# Removals in flight at most (the window starts at one and opens fully once a removal has
# settled): the first removal is confirmed before a second is sent, so a list that refuses
# them fails one request, not many; then they go out as fast as the rate budget allows and are
# confirmed several at a time by one ``GET /activities`` listing instead of a poll each.
MAX_REMOVALS_IN_FLIGHT = 16


class _RemovalWindow:
    """The removals of one round sent but not yet settled."""

    def __init__(self, deps: RunDependencies, client: ConstantContactClient, *, run_id: str,
                 export_id: str, list_id: str) -> None:
        self.deps, self.client = deps, client
        self.run_id, self.export_id, self.list_id = run_id, export_id, list_id
        self.size = 1
        self.in_flight: dict[str, tuple[int, RemovalMembers]] = {}
        self.failed: list[str] = []

    def add(self, activity_id: str, batch_id: int, members: RemovalMembers) -> None:
        self.in_flight[activity_id] = (batch_id, members)
        if len(self.in_flight) >= self.size:
            self.settle(until_empty=False)

    def settle(self, *, until_empty: bool) -> None:
        """Settle finished removals: all of them, or (``until_empty=False``) at least one."""
        while self.in_flight:
            settled = 0
            for activity_id, activity in self._look_up().items():
                if activity.is_terminal and activity_id in self.in_flight:
                    self._settle_one(activity_id, activity)
                    settled += 1
            if settled:
                self.size = MAX_REMOVALS_IN_FLIGHT
            if self.in_flight and (until_empty or not settled):
                time.sleep(self.deps.poll_interval)
            elif not until_empty:
                return

    def _look_up(self) -> dict[str, Activity]:
        return look_up_activities(self.client, self.in_flight)

    def _settle_one(self, activity_id: str, done: Activity) -> None:
        batch_id, members = self.in_flight.pop(activity_id)
        engine = self.deps.engine
        if done.state == "completed" and not removal_short(done, len(members)):
            record_removed(engine, export_id=self.export_id, batch_id=batch_id,
                           members=members)
            return
        if done.state == "completed":
            # An id Constant Contact did not find (a kept id gone stale): none of this
            # removal's ids is trusted again, and its leavers are looked up on the list.
            log.warning("mirror: removal activity %s completed %s of its %d contacts (%s); "
                        "its contacts are looked up on the list again", activity_id,
                        done.status.items_completed_count, len(members),
                        "; ".join(done.activity_errors[:3]) or "no message")
            forget_contact_ids(engine, export_id=self.export_id, list_id=self.list_id,
                               keys=members.keys)
        else:
            log.warning("mirror: removal activity %s ended %s; its contacts still on the list "
                        "are removed again", activity_id, done.state)
        record_removal_unsettled(engine, export_id=self.export_id, run_id=self.run_id,
                                 batch_id=batch_id, members=members, state="failed",
                                 errors=done.activity_errors)
        self.failed.extend(str(e) for e in members.emails.to_pylist())


def _removal_counts(deps: RunDependencies, run_id: str) -> dict[str, int]:
    with deps.sessions() as session:
        removed = session.scalar(select(func.coalesce(func.sum(RunBatch.contacts), 0)).where(
            RunBatch.run_id == run_id, RunBatch.kind == "remove",
            RunBatch.state == "confirmed")) or 0
        run = session.get(Run, run_id)
        off = int(run.counts.get("already_off_list", 0)) if run is not None else 0
    return {"left_segment": int(removed) + off, "removed": int(removed),
            "already_off_list": off}
