"""DuckDB's database-wide settings (threads, memory limit) shared by the store's cursors."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

# DuckDB's memory limit (MB) for everything but the export's reads: imports, refreshes, rules.
MEMORY_LIMIT_MB = 128


@dataclass(eq=False)
class Lease:
    """One cursor's claim on the connection's settings: the memory limit (MB) its queries
    may need, and whether they may run on one thread."""

    generation: int
    limit_mb: int
    lean: bool


class SharedSettings:
    """DuckDB's thread count and memory limit, which are the database's (global), not a
    cursor's: set so that every cursor in use gets what its queries need.

    Each cursor registers what it needs: other work the store's ``MEMORY_LIMIT_MB`` and the
    default threads; one of the export's reads (``lean_mb``) that many MB on one thread. The
    database runs at the largest limit any cursor in use needs, on one thread only when every
    cursor in use is lean. A lean read that starts while other work runs counts as that work
    until it says otherwise (:meth:`need`, between its queries), so a query never sees the
    limit lowered or the threads changed under it towards less than it started with; a limit
    DuckDB refuses to lower (memory still pinned) stays where it is. Idle, nothing changes.
    Every call is made under the store's lock.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.default_threads = 1
        self.limit_mb = MEMORY_LIMIT_MB
        self.threads = 1
        self._leases: list[Lease] = []

    def reset(self, conn: duckdb.DuckDBPyConnection) -> None:
        """A new connection, with the store's settings; leases of the old one are void."""
        self.generation += 1
        self._leases = []
        self.limit_mb = MEMORY_LIMIT_MB
        row = conn.execute("SELECT current_setting('threads')").fetchall()
        self.default_threads = self.threads = max(1, int(row[0][0]))

    def acquire(self, cur: duckdb.DuckDBPyConnection, lean_mb: int | None) -> Lease:
        lease = Lease(self.generation, MEMORY_LIMIT_MB, lean=False)
        self._leases.append(lease)
        self.need(cur, lease, lean_mb)
        return lease

    def need(self, cur: duckdb.DuckDBPyConnection, lease: Lease, lean_mb: int | None) -> None:
        """What ``lease``'s next queries need (None: the store's settings); call it only
        between the lease's queries."""
        if lease.generation != self.generation:
            return
        others = [x for x in self._leases if x is not lease]
        if lean_mb is None:
            lease.limit_mb, lease.lean = MEMORY_LIMIT_MB, False
        elif any(not x.lean for x in others):
            # Other work is running with the store's settings: run as it does.
            lease.limit_mb, lease.lean = max(lean_mb, self.limit_mb), False
        else:
            lease.limit_mb, lease.lean = lean_mb, True
        self._apply(cur)

    def release(self, cur: duckdb.DuckDBPyConnection | None, lease: Lease) -> None:
        if lease.generation != self.generation or lease not in self._leases:
            return
        self._leases.remove(lease)
        if cur is not None and self._leases:
            self._apply(cur)

    def _apply(self, cur: duckdb.DuckDBPyConnection) -> None:
        limit = max(x.limit_mb for x in self._leases)
        threads = 1 if all(x.lean for x in self._leases) else self.default_threads
        # A higher limit before more threads, fewer threads before a lower limit: a running
        # query never has less memory than its threads started with.
        if limit > self.limit_mb:
            self._set(cur, "memory_limit", f"'{limit}MB'")
        if threads != self.threads:
            self._set(cur, "threads", str(threads))
        if limit < self.limit_mb:
            self._set(cur, "memory_limit", f"'{limit}MB'")

    def _set(self, cur: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
        try:
            cur.execute(f"SET GLOBAL {name} = {value}")
        except duckdb.Error:
            return  # e.g. a lower limit while pinned memory exceeds it: keep the current one
        if name == "threads":
            self.threads = int(value)
        else:
            self.limit_mb = int(value.strip("'MB"))
