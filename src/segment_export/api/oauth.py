"""The OAuth round trip as the web app does it: redirect URIs back to this app, and the
callback matched to its connection by ``state``."""

from __future__ import annotations

from urllib.parse import parse_qs

from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export.api.state import AppServices
from segment_export.constant_contact import AuthorizationDeniedError
from segment_export.db.models import Connection, User
from segment_export.definitions.connections import DEFAULT_REDIRECT_URI, complete_authorization

API_CALLBACK_PATH = "/api/connections/oauth/callback"
WEB_CALLBACK_PATH = "/admin/connections/callback"


def pending_connection(session: Session, *, query: str) -> Connection:
    """The connection whose authorization a callback answers, found by its ``state``.

    A missing state, or one no connection is waiting for (forged, replayed or stale), is
    refused before anything is exchanged.
    """
    state = (parse_qs(query).get("state") or [""])[0]
    if not state:
        raise AuthorizationDeniedError("The authorization callback carries no state")
    connection = session.scalars(
        select(Connection).where(Connection.oauth_state == state)).one_or_none()
    if connection is None:
        raise AuthorizationDeniedError(
            "The authorization callback's state matches no pending connection (it was used "
            "already, or the sign-in was started again)")
    return connection


def finish_callback(session: Session, *, actor: User, query: str,
                    services: AppServices) -> Connection:
    """Complete the authorization a callback with this query string answers."""
    connection = pending_connection(session, query=query)
    redirect_uri = connection.redirect_uri or DEFAULT_REDIRECT_URI
    return complete_authorization(
        session, actor=actor, connection=connection, callback_url=f"{redirect_uri}?{query}",
        settings=services.settings, engine=services.runtime.engine, metrics=services.metrics)
