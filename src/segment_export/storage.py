"""Faults of the product's own storage: a full disk, a state database that went away.
Recognised here, whatever layer raised them (OS, SQLite, DuckDB, PostgreSQL), and told plainly
with the path or the server."""

from __future__ import annotations

import errno
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from segment_export.errors import RetriableError, SegmentExportError
from segment_export.languages import N_

_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL; sqlite3 errors carry it since Python 3.11
_POSTGRES_DISK_FULL = "53100"
_NO_SPACE = "no space left on device"


class StorageFullError(SegmentExportError):
    """The disk under the data directory or the state database has no space left."""

    hint = ("Free space on that disk (or move the data directory to a larger one), then run the "
            "export again: batches Constant Contact confirmed are kept and not sent again.")


class StateStoreUnavailableError(RetriableError):
    """The state database cannot be reached (restarted, down, network cut)."""

    hint = ("The run resumes after its last confirmed batch once the database is back: a worker "
            "picks it up, or run `segment-export runs resume RUN_ID`.")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a disk is full: ENOSPC from the OS or DuckDB,
    SQLITE_FULL from SQLite, disk_full (53100) from PostgreSQL."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        if getattr(cause, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        if getattr(cause, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return True
        if _NO_SPACE in str(cause).lower():
            return True
    return False


def is_database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is the state database's connection failing (not a full disk)."""
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError) and not (
        is_storage_full(exc))


def describe_state_store(engine: Engine) -> str:
    """The state database for people: a SQLite file's path, else the server (no password)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"the state database {url.database}"
    return f"the state database at {url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def storage_full_error(exc: BaseException, *, data_dir: str,
                       engine: Engine | None = None) -> StorageFullError:
    """A clear error for a full disk: which file or place, and that no space is left."""
    causes = list(_chain(exc))
    filename = next((c.filename for c in causes if isinstance(c, OSError) and c.filename), None)
    by_database = any(getattr(c, "sqlite_errorcode", None) == _SQLITE_FULL
                      or getattr(c, "sqlstate", None) == _POSTGRES_DISK_FULL for c in causes)
    if filename is not None:
        place = str(filename)
    elif by_database and engine is not None:
        place = describe_state_store(engine)
    else:
        place = f"the data directory {data_dir}"
    return StorageFullError(N_("No space left on device: cannot write to %(place)s (data "
                               "directory %(data_dir)s; %(error)s)"),
                            values={"place": place, "data_dir": data_dir,
                                    "error": _first_line(exc)},
                            path=str(filename or data_dir))


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def unreachable_error(exc: BaseException, *, engine: Engine) -> StateStoreUnavailableError:
    """A clear error for a state database that cannot be reached."""
    return StateStoreUnavailableError(
        N_("Lost the connection to %(store)s: %(error)s"),
        values={"store": describe_state_store(engine), "error": _first_line(exc)},
        reason="state_store_unavailable")
