"""Stages 1-2 of a run, streaming: read the segments' members chunk by chunk and validate them.

The profile store first finds the emails several sendable profiles share (a query where the
profiles are); then every mapped column streams a chunk at a time, so a million-member run
holds one chunk of profiles in memory, not the whole segment.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, insert

from segment_export.db.models import Export, RejectedRow
from segment_export.exports.validate import (
    EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    DedupePlan,
    ValidatedMembers,
    validate_members,
)
from segment_export.profiles import ProfileStore

CHUNK_ROWS = 100_000


@dataclass(slots=True)
class LocalCounts:
    """What validation decided, summed over the chunks seen so far."""

    in_segment: int = 0
    no_consent: int = 0
    rejected_locally: int = 0
    valid: int = 0
    warnings: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"in_segment": self.in_segment, "no_consent": self.no_consent,
                "rejected_locally": self.rejected_locally, "valid": self.valid,
                "warnings": dict(self.warnings)}

    def add(self, chunk: ValidatedMembers) -> None:
        self.in_segment += chunk.in_segment
        self.no_consent += chunk.no_consent
        self.rejected_locally += chunk.rejected_count - chunk.no_consent
        self.valid += chunk.contacts.num_rows
        self.warnings.update(chunk.warnings)


def stream_members(
    store: ProfileStore,
    export: Export,
    *,
    seconds: dict[str, float],
    counts: LocalCounts,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[ValidatedMembers]:
    """Validated chunks of the export's members; ``counts`` and ``seconds`` grow as they go."""
    id_column = store.id_column or "customer_id"
    email_column = export.mapping["email"]
    consent = export.consent_field
    started = time.perf_counter()
    plan = DedupePlan(store.duplicate_emails(
        export.segment_ids, email_column=email_column, consent_column=consent,
        pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH))
    _add(seconds, "validate", started)
    columns = list(dict.fromkeys([*export.mapping.values(), *([consent] if consent else [])]))
    reader = store.read_members(export.segment_ids, columns, batch_size=chunk_rows)
    while True:
        started = time.perf_counter()
        batch = next(reader, None)
        _add(seconds, "read", started)
        if batch is None:
            return
        started = time.perf_counter()
        chunk = validate_members(pa.Table.from_batches([batch]), id_column=id_column,
                                 mapping=export.mapping, consent_column=consent, dedupe=plan)
        counts.add(chunk)
        _add(seconds, "validate", started)
        yield chunk


def store_rejections(engine: Engine, run_id: str, chunk: ValidatedMembers) -> None:
    """Write a chunk's refused rows, with their reasons, to the run's report."""
    rows = chunk.rejected.to_pylist()
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(RejectedRow), [{"run_id": run_id, **r} for r in rows])


def _add(seconds: dict[str, float], stage: str, started: float) -> None:
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 3)
