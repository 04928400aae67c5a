"""Connections to Constant Contact accounts: set up by admins over OAuth, used by exports."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.access import can_use
from segment_export.config import Settings
from segment_export.constant_contact import (
    ConstantContactClient,
    OAuthClient,
    RateLimiter,
    RefreshingTokenProvider,
    RequestHook,
    make_pkce_pair,
    new_state,
    parse_callback,
    save_token,
)
from segment_export.db.models import Connection, Export, User
from segment_export.db.token_store import DatabaseTokenStore
from segment_export.db.types import utcnow
from segment_export.errors import (
    ConfigurationError,
    NotFoundError,
    SegmentExportError,
)
from segment_export.languages import N_
from segment_export.log import register_secret
from segment_export.metrics import MeteredRateLimiter, Metrics
from segment_export.pacing import make_rate_limiter
from segment_export.users import Role, require_role

CONSENT_TEXT_VERSION = "2026-11-28"
CONSENT_TEXT = N_(
    "I agree that enabling this connection lets data, including personal data, leave "
    "segment-export's compliance boundary and go to Constant Contact, and that my organisation "
    "is responsible for Constant Contact meeting its privacy and compliance obligations."
)
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8787/oauth/callback"
# contact_data and offline_access do the work; account_read lets "test" name the account reached
# (GET /account/summary requires it).
SCOPES = ("account_read", "contact_data", "offline_access")


def api_key_hash(client_id: str) -> str:
    """Rate limits count per API key; this names the key in shared state without revealing it."""
    return hashlib.sha256(client_id.encode()).hexdigest()


def get_connection(session: Session, *, name_or_id: str) -> Connection:
    conn = session.scalars(
        select(Connection).where(
            or_(Connection.id == name_or_id, Connection.display_name == name_or_id)
        )
    ).one_or_none()
    if conn is None:
        raise NotFoundError(N_("No connection named %(name)s"), values={"name": repr(name_or_id)},
                            connection=name_or_id)
    return conn


def list_connections(session: Session, *, actor: User) -> list[Connection]:
    """Every connection (admins only: contributors never see connections)."""
    require_role(actor, Role.ADMIN)
    return list(session.scalars(select(Connection).order_by(Connection.display_name)))


def usable_connections(session: Session, *, actor: User) -> list[Connection]:
    """The connections ``actor`` may pick for an export."""
    return [c for c in session.scalars(select(Connection)) if can_use(actor, c)]


class ConnectionSpec(BaseModel):
    """A new connection as an admin describes it (API, page and CLI alike); checked by
    ``create_connection``, which names the field of a refused value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_name: str
    client_id: str
    client_secret: str | None = None
    consent: bool = False
    shared_with_contributors: bool = False
    redirect_uri: str = DEFAULT_REDIRECT_URI


class ConnectionChanges(BaseModel):
    """What an edit of a connection changes; None leaves a setting as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_name: str | None = None
    shared_with_contributors: bool | None = None
    sms_only_allowed: bool | None = None


def _name_free(session: Session, display_name: str) -> None:
    if session.scalar(select(Connection.id).where(Connection.display_name == display_name)):
        raise ConfigurationError(N_("A connection named %(name)s already exists"),
                                 values={"name": repr(display_name)},
                                 field="display_name")


def create_connection(session: Session, *, actor: User, spec: ConnectionSpec) -> Connection:
    """Save a connection (not yet authorized). The data-privacy consent is required."""
    require_role(actor, Role.ADMIN)
    client_id, client_secret = spec.client_id, spec.client_secret
    shared_with_contributors = spec.shared_with_contributors
    display_name = spec.display_name.strip()
    if not display_name:
        raise ConfigurationError(N_("A connection needs a display name"), field="display_name")
    if not spec.consent:
        raise ConfigurationError(
            N_("The data privacy and compliance agreement must be accepted to create a connection"),
            hint=CONSENT_TEXT,
            field="consent",
        )
    if not client_id.strip():
        raise ConfigurationError(N_("A connection needs the application's client id"),
                                 field="client_id")
    _name_free(session, display_name)
    register_secret(client_secret)
    conn = Connection(
        display_name=display_name,
        shared_with_contributors=shared_with_contributors,
        client_id=client_id.strip(),
        client_secret=client_secret,
        redirect_uri=spec.redirect_uri,
        api_key_hash=api_key_hash(client_id.strip()),
        consent_text_version=CONSENT_TEXT_VERSION,
        consent_by_id=actor.id,
        consent_at=utcnow(),
        created_by_id=actor.id,
    )
    session.add(conn)
    session.flush()
    audit.record(session, actor=actor, action="connection.created", target_type="connection",
                 target_id=conn.id, display_name=display_name,
                 shared_with_contributors=shared_with_contributors,
                 consent_text_version=CONSENT_TEXT_VERSION)
    return conn


def update_connection(session: Session, *, actor: User, connection: Connection,
                      changes: ConnectionChanges) -> Connection:
    """Rename a connection, change who may use it, or say whether its account takes SMS-only
    contacts (admins; docs/sms.md)."""
    require_role(actor, Role.ADMIN)
    display_name = changes.display_name
    shared_with_contributors = changes.shared_with_contributors
    sms_only_allowed = changes.sms_only_allowed
    changed: dict[str, object] = {}
    if display_name is not None and not display_name.strip():
        raise ConfigurationError(N_("A connection needs a display name"), field="display_name")
    if display_name is not None and display_name.strip() != connection.display_name:
        _name_free(session, display_name.strip())
        connection.display_name = display_name.strip()
        changed["display_name"] = connection.display_name
    if shared_with_contributors is not None:
        connection.shared_with_contributors = shared_with_contributors
        changed["shared_with_contributors"] = shared_with_contributors
    if sms_only_allowed is not None:
        connection.sms_only_allowed = sms_only_allowed
        changed["sms_only_allowed"] = sms_only_allowed
    audit.record(session, actor=actor, action="connection.updated", target_type="connection",
                 target_id=connection.id, **changed)
    return connection


def _oauth(connection: Connection, settings: Settings,
           transport: httpx.BaseTransport | None = None) -> OAuthClient:
    return OAuthClient(auth_url=settings.cc_auth_url, client_id=connection.client_id,
                       client_secret=connection.client_secret, transport=transport)


def start_authorization(
    session: Session, *, actor: User, connection: Connection, settings: Settings
) -> str:
    """The authorize URL to send the Constant Contact admin to (PKCE S256 and a fresh state)."""
    require_role(actor, Role.ADMIN)
    verifier, challenge = make_pkce_pair()
    connection.oauth_state = new_state()
    connection.pkce_verifier = verifier
    with _oauth(connection, settings) as oauth:
        return oauth.authorize_url(redirect_uri=connection.redirect_uri or DEFAULT_REDIRECT_URI,
                                   state=connection.oauth_state, code_challenge=challenge,
                                   scopes=SCOPES)


def complete_authorization(
    session: Session,
    *,
    actor: User,
    connection: Connection,
    callback_url: str,
    settings: Settings,
    engine: Engine,
    transport: httpx.BaseTransport | None = None,
    metrics: Metrics | None = None,
) -> Connection:
    """Check the callback's state, trade the code for tokens, store them and name the account.

    The admin completing it becomes the connection's export user.
    """
    require_role(actor, Role.ADMIN)
    code = parse_callback(callback_url, connection.oauth_state or "")
    verifier = connection.pkce_verifier or ""
    connection.oauth_state = None  # a state is good for one callback only
    connection.pkce_verifier = None
    with _oauth(connection, settings, transport) as oauth:
        token = oauth.exchange_code(
            code=code, redirect_uri=connection.redirect_uri or DEFAULT_REDIRECT_URI,
            code_verifier=verifier,
        )
    session.flush()
    session.commit()  # the token store writes through its own connection
    save_token(DatabaseTokenStore(engine, connection.id), token)
    session.refresh(connection)
    connection.export_user_id = actor.id
    with client_for(connection, settings=settings, engine=engine, transport=transport,
                    metrics=metrics) as client:
        summary = client.account_summary()
    connection.account_name = summary.organization_name
    connection.account_email = summary.contact_email
    audit.record(session, actor=actor, action="connection.authorized",
                 target_type="connection", target_id=connection.id,
                 account=summary.organization_name)
    return connection


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    """What `test` shows: the account reached and how long the access token lasts."""

    ok: bool
    account_name: str | None
    account_email: str | None
    token_expires_at: datetime | None
    error: str | None = None


def check_connection(
    session: Session,
    *,
    actor: User,
    connection: Connection,
    settings: Settings,
    engine: Engine,
    transport: httpx.BaseTransport | None = None,
    metrics: Metrics | None = None,
) -> ConnectionTest:
    """Call Constant Contact with the stored grant and report the account it reaches."""
    require_role(actor, Role.ADMIN)
    try:
        with client_for(connection, settings=settings, engine=engine,
                        transport=transport, metrics=metrics) as client:
            summary = client.account_summary()
    except SegmentExportError as exc:
        session.refresh(connection)
        return ConnectionTest(False, connection.account_name, connection.account_email,
                              connection.token_expires_at, str(exc))
    session.refresh(connection)
    return ConnectionTest(True, summary.organization_name, summary.contact_email,
                          connection.token_expires_at)


def dependent_exports(session: Session, *, connection: Connection) -> list[Export]:
    return list(session.scalars(select(Export).where(Export.connection_id == connection.id)))


def remove_connection(
    session: Session,
    *,
    actor: User,
    connection: Connection,
    settings: Settings,
    exports: dict[str, Literal["remove", "detach"]],
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Revoke the grant and delete the connection; each dependent export is removed or detached.

    ``exports`` must name every dependent export (by id) with "remove" or "detach", so nothing
    is dropped by surprise.
    """
    from segment_export.definitions.exports import remove_export

    require_role(actor, Role.ADMIN)
    dependents = dependent_exports(session, connection=connection)
    missing = [e.name for e in dependents if e.id not in exports]
    if missing:
        raise ConfigurationError(
            N_("Say for every export that uses this connection whether to remove or detach "
               "it: %(exports)s"),
            values={"exports": ", ".join(missing)},
            exports=missing,
        )
    for export in dependents:
        if exports[export.id] == "remove":
            remove_export(session, actor=actor, export=export)
        else:
            export.connection_id = None
            export.enabled = False
            audit.record(session, actor=actor, action="export.detached", target_type="export",
                         target_id=export.id, connection=connection.display_name)
    if connection.refresh_token or connection.access_token:
        try:
            with _oauth(connection, settings, transport) as oauth:
                if connection.refresh_token:
                    oauth.revoke(connection.refresh_token)
                if connection.access_token:
                    oauth.revoke(connection.access_token, token_type_hint="access_token")  # noqa: S106
        except SegmentExportError as exc:
            # The grant dies with the connection row either way; say so in the audit log.
            audit.record(session, actor=actor, action="connection.revoke_failed",
                         target_type="connection", target_id=connection.id, error=str(exc))
    audit.record(session, actor=actor, action="connection.removed", target_type="connection",
                 target_id=connection.id, display_name=connection.display_name)
    session.delete(connection)


@contextmanager
def client_for(
    connection: Connection,
    *,
    settings: Settings,
    engine: Engine,
    transport: httpx.BaseTransport | None = None,
    on_request: RequestHook | None = None,
    metrics: Metrics | None = None,
    redis_url: str | None = None,
    **client_options: Any,
) -> Iterator[ConstantContactClient]:
    """A client for this connection: refreshing tokens under the state-store lock, paced per
    API key through the shared limiter. Both HTTP pools close when the block ends.

    ``metrics`` hears of token refreshes and rate-limit waits (None: nobody does); requests
    reach whoever ``on_request`` calls. The client itself knows nothing of either.
    """
    oauth = _oauth(connection, settings, transport)
    provider = RefreshingTokenProvider(
        store=DatabaseTokenStore(engine, connection.id), oauth=oauth,
        on_refresh=(lambda ok: None) if metrics is None else metrics.observe_token_refresh)
    limiter: RateLimiter = make_rate_limiter(
        settings=settings, key=connection.api_key_hash, engine=engine,
        redis_url=redis_url or settings.redis_url)
    if metrics is not None:
        limiter = MeteredRateLimiter(limiter, metrics)
    client = ConstantContactClient(api_url=settings.cc_api_url, auth=provider, limiter=limiter,
                                   transport=transport, on_request=on_request, **client_options)
    try:
        yield client
    finally:
        client.close()
        oauth.close()
