"""Stages 1-2 of a run, streaming: read the segments' members chunk by chunk and validate them.

The profile store first finds the emails several sendable profiles share (a query where the
profiles are); then every mapped column streams a chunk at a time, so a million-member run
holds one chunk of profiles in memory, not the whole segment.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from segment_export.db.models import Export, RejectedRow
from segment_export.db.types import utcnow
from segment_export.definitions.custom_fields import AccountField
from segment_export.exports.validate import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    DedupePlan,
    SmsRules,
    ValidatedMembers,
    repeated_keys,
    validate_members,
)
from segment_export.profiles import ProfileStore

# Rows validated, diffed and serialized at a time: the transient Arrow memory of a chunk is a
# few times its size. At a million members 25,000 rows peaked about 60 MB lower than 100,000,
# for the same CPU time.
CHUNK_ROWS = 25_000


@dataclass(slots=True)
class LocalCounts:
    """What validation decided, summed over the chunks seen so far."""

    in_segment: int = 0
    no_consent: int = 0
    rejected_locally: int = 0
    valid: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    sms: bool = False  # the export maps a phone number: the SMS counts are reported
    sms_refused: int = 0
    sms_phone_dropped: int = 0
    sms_only: int = 0

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "in_segment": self.in_segment, "no_consent": self.no_consent,
            "rejected_locally": self.rejected_locally, "valid": self.valid,
            "warnings": dict(self.warnings)}
        if self.sms:
            counts.update(sms_refused=self.sms_refused, sms_phone_dropped=self.sms_phone_dropped,
                          sms_only=self.sms_only)
        return counts

    def add(self, chunk: ValidatedMembers) -> None:
        self.in_segment += chunk.in_segment
        self.no_consent += chunk.no_consent
        # A member sent without its bad number is not refused: its report row is about the number.
        self.rejected_locally += chunk.refused_members - chunk.no_consent
        self.valid += chunk.contacts.num_rows
        self.warnings.update(chunk.warnings)
        self.sms_refused += chunk.sms_refused
        self.sms_phone_dropped += chunk.phone_dropped
        self.sms_only += chunk.sms_only


def stream_members(
    store: ProfileStore,
    export: Export,
    *,
    seconds: dict[str, float],
    counts: LocalCounts,
    chunk_rows: int = CHUNK_ROWS,
    custom_fields: Mapping[str, AccountField] | None = None,
    sms_only_allowed: bool = False,
) -> Iterator[ValidatedMembers]:
    """Validated chunks of the export's members; ``counts`` and ``seconds`` grow as they go.
    ``custom_fields``: the account's fields the mapping fills, to cast their values by type;
    ``sms_only_allowed``: the connection takes SMS-only contacts (docs/sms.md)."""
    _lean_arrow_allocator()
    id_column = store.id_column or "customer_id"
    email_column = export.mapping["email"]
    consent = export.consent_field
    started = time.perf_counter()
    plan = DedupePlan(store.duplicate_emails(
        export.segment_ids, email_column=email_column, consent_column=consent,
        pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH))
    columns = list(dict.fromkeys([*export.mapping.values(), *([consent] if consent else [])]))
    sms = None
    if "sms_number" in export.mapping:
        counts.sms = True
        sms = SmsRules(region=export.phone_region or "US", sms_only_allowed=sms_only_allowed)
        if sms_only_allowed:
            plan = plan.with_more(_sms_only_duplicates(store, export, columns, sms, chunk_rows))
    _add(seconds, "validate", started)
    reader = store.read_members(export.segment_ids, columns, batch_size=chunk_rows)
    while True:
        started = time.perf_counter()
        batch = next(reader, None)
        _add(seconds, "read", started)
        if batch is None:
            return
        started = time.perf_counter()
        chunk = validate_members(pa.Table.from_batches([batch]), id_column=id_column,
                                 mapping=export.mapping, consent_column=consent, dedupe=plan,
                                 custom_fields=custom_fields, sms=sms)
        counts.add(chunk)
        _add(seconds, "validate", started)
        yield chunk


def _sms_only_duplicates(store: ProfileStore, export: Export, columns: list[str],
                         sms: SmsRules, chunk_rows: int) -> pa.Table:
    """A first pass for SMS-only members (no email, a number): the numbers several sendable
    ones share, with the highest customer id of each, as the email plan has for emails.

    Their numbers are read in Python (libphonenumber), so only the rows without an email are
    validated here, by the same rules as the run's own pass.
    """
    id_column = store.id_column or "customer_id"
    email_column, phone_column = export.mapping["email"], export.mapping["sms_number"]
    keys: list[pa.Table] = []
    for batch in store.read_members(export.segment_ids, columns, batch_size=chunk_rows):
        members = pa.Table.from_batches([batch])
        email = pc.utf8_trim_whitespace(pc.cast(members.column(email_column), pa.string()))
        phone = pc.utf8_trim_whitespace(pc.cast(members.column(phone_column), pa.string()))
        candidates = members.filter(pc.and_(pc.fill_null(pc.equal(email, ""), True),
                                            pc.fill_null(pc.not_equal(phone, ""), False)))
        if not candidates.num_rows:
            continue
        found = validate_members(candidates, id_column=id_column, mapping=export.mapping,
                                 consent_column=export.consent_field,
                                 dedupe=DedupePlan.nothing(), sms=sms)
        sort_ids = candidates.column(id_column)
        ids = pc.cast(sort_ids, pa.string()) if not pa.types.is_string(sort_ids.type) else sort_ids
        position = pc.index_in(found.contacts.column("customer_id"), value_set=ids)
        keys.append(pa.table({"email": found.contacts.column("email"),
                              "sort_id": sort_ids.take(position)}))
    if not keys:
        return DedupePlan.nothing().winners
    return repeated_keys(pa.concat_tables(keys))


def _lean_arrow_allocator() -> None:
    """Allocate Arrow buffers with the system allocator rather than pyarrow's default mimalloc.

    mimalloc keeps the pages of freed chunk intermediates for its threads: a million-member run
    peaked about 50 MB higher with it, at the same CPU time. pyarrow reads its default pool
    with the GIL held, so switching it is safe while other threads use Arrow; buffers already
    made go back to the pool that made them.
    """
    if pa.default_memory_pool().backend_name == "mimalloc":
        pa.set_memory_pool(pa.system_memory_pool())


def store_rejections(engine: Engine, run_id: str, chunk: ValidatedMembers) -> None:
    """Write a chunk's refused rows, with their reasons, to the run's report.

    Straight through the driver's executemany: SQLAlchemy's per-row parameter work cost more
    than the database's own insert for the tens of thousands of rows a large run refuses.
    """
    rejected = chunk.rejected
    if not rejected.num_rows:
        return
    # The timestamp in the form the dialect's own type stores it (SQLite: SQLAlchemy's text).
    column_type = RejectedRow.__table__.c.created_at.type.dialect_impl(engine.dialect)
    created = column_type.bind_processor(engine.dialect)
    now = utcnow()
    columns = ("customer_id", "email", "reason", "detail")
    rows = list(zip(itertools.repeat(run_id),
                    *(rejected.column(c).to_pylist() for c in columns),
                    itertools.repeat(created(now) if created else now)))
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    # Only the driver's placeholders are formatted in; every value travels as a parameter.
    sql = ("INSERT INTO rejected_rows (run_id, customer_id, email, reason, detail, created_at) "
           "VALUES (" + ", ".join([marker] * 6) + ")")
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()


def _add(seconds: dict[str, float], stage: str, started: float) -> None:
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 3)
