"""The record of every API and OAuth request the emulator answered (control calls excluded)."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One answered request: what came in, how big it was, and what went out."""

    seq: int
    time: float
    method: str
    path: str
    query: str
    status: int = 0
    request_bytes: int = 0
    truncated: bool = False
    """The body was cut at ``max_body_bytes`` and only the contacts before the cut imported."""
    imported_bytes: int | None = None
    client_id: str | None = None
    fault: str | None = None
    """The injected fault this request met, if any (``status:503``, ``slow``, ``drop:after``)."""
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the control API."""
        return asdict(self)


class RequestLog:
    """The newest ``limit`` requests; older ones are dropped so memory stays bounded."""

    def __init__(self, limit: int) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._seq = 0

    def start(self, *, time: float, method: str, path: str, query: str) -> RequestRecord:
        """Open a record for a request that just arrived (filled in as it is answered)."""
        self._seq += 1
        record = RequestRecord(seq=self._seq, time=time, method=method, path=path, query=query)
        self._records.append(record)
        return record

    def since(self, seq: int = 0) -> list[RequestRecord]:
        """Records after sequence number ``seq``, oldest first."""
        return [r for r in self._records if r.seq > seq]

    def resize(self, limit: int) -> None:
        """Keep at most ``limit`` records from now on."""
        if limit != self._records.maxlen:
            self._records = deque(self._records, maxlen=limit)

    def clear(self) -> None:
        """Forget every record (sequence numbers keep growing)."""
        self._records.clear()
