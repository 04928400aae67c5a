"""A connection's grant in the state database: the token store the client refreshes through."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Engine

from segment_export.constant_contact.auth import Token
from segment_export.constant_contact.tokens import (
    CONNECTED,
    REAUTHORIZATION_NEEDED,
    StoredToken,
    TokenChange,
)
from segment_export.db.models import Connection
from segment_export.db.rate_budget import lock_row
from segment_export.errors import NotFoundError
from segment_export.languages import N_

_CONNECTIONS = cast(sa.Table, Connection.__table__)


class DatabaseTokenStore:
    """A connection's grant in the state database, in its encrypted columns.

    ``update`` locks the connection's row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN
    IMMEDIATE`` on SQLite) for the whole read-refresh-write, so one refresh runs at a time per
    connection across threads and processes, and a rotated refresh token is committed before
    anyone can use the access token that came with it.
    """

    def __init__(self, engine: Engine, connection_id: str) -> None:
        self.engine = engine
        self.connection_id = connection_id

    def _query(self) -> sa.Select[tuple[object, ...]]:
        c = _CONNECTIONS.c
        return sa.select(
            c.access_token, c.refresh_token, c.token_expires_at, c.scope, c.token_version, c.status
        ).where(c.id == self.connection_id)

    def _stored(self, row: sa.Row[tuple[object, ...]] | None) -> StoredToken:
        if row is None:
            raise NotFoundError(N_("No connection %(connection_id)s"),
                                values={"connection_id": self.connection_id}, id=self.connection_id)
        m = row._mapping
        token = None
        if m["access_token"] and m["token_expires_at"] is not None:
            token = Token(
                access_token=cast(str, m["access_token"]),
                refresh_token=cast("str | None", m["refresh_token"]),
                expires_at=cast(datetime, m["token_expires_at"]),
                scope=cast("str | None", m["scope"]) or "",
            )
        return StoredToken(
            token=token, version=cast(int, m["token_version"] or 0), status=cast(str, m["status"])
        )

    def load(self) -> StoredToken:
        """See TokenStore.load."""
        with self.engine.connect() as conn:
            return self._stored(conn.execute(self._query()).first())

    def update(self, change: TokenChange) -> StoredToken:
        """See TokenStore.update."""
        with self.engine.connect() as conn:
            current = self._stored(lock_row(conn, self._query()))
            try:
                new = change(current)
            except BaseException:
                conn.rollback()
                raise
            if new is None:
                conn.rollback()
                return current
            version = current.version + 1
            conn.execute(
                _CONNECTIONS.update()
                .where(_CONNECTIONS.c.id == self.connection_id)
                .values(
                    access_token=new.access_token,
                    refresh_token=new.refresh_token,
                    token_expires_at=new.expires_at,
                    scope=new.scope,
                    token_version=version,
                    status=CONNECTED,
                    last_error=None,
                )
            )
            conn.commit()
        return StoredToken(token=new, version=version, status=CONNECTED)

    def mark_reauthorization_needed(self, reason: str) -> None:
        """See TokenStore.mark_reauthorization_needed."""
        with self.engine.begin() as conn:
            conn.execute(
                _CONNECTIONS.update()
                .where(_CONNECTIONS.c.id == self.connection_id)
                .values(status=REAUTHORIZATION_NEEDED, last_error=reason)
            )
