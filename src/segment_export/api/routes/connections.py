"""Connections to Constant Contact accounts (admins), the picker contributors see, OAuth."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field, SecretStr

from segment_export import access
from segment_export.api.deps import AdminUser, CurrentUser, Db, Services
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.oauth import API_CALLBACK_PATH, finish_callback
from segment_export.api.types import Name, ObjectId, Word
from segment_export.db.models import Connection, User
from segment_export.definitions import connections as service
from segment_export.definitions.lists import account_lists
from segment_export.exports import suppression as suppressions
from segment_export.users import Role, require_role

router = APIRouter(prefix="/api/connections", tags=["connections"], responses=PROBLEM_RESPONSES)


class ConnectionCreate(BaseModel):
    display_name: Name = Field(description="Say its purpose and target, e.g. 'Newsletter (EU)'.")
    client_id: Word = Field(description="The Constant Contact application's API key.")
    client_secret: Annotated[SecretStr, Field(max_length=1024)] | None = None
    shared_with_contributors: bool = Field(
        default=False, description="Let contributors use it in their exports.")
    consent: bool = Field(description="Must be true: " + service.CONSENT_TEXT)
    redirect_uri: Annotated[str, Field(max_length=500, pattern=r"^https?://[^\x00-\x20\x7f]+$")] \
        | None = Field(default=None, description="Registered with the Constant Contact "
                       "application; default: this app's /api/connections/oauth/callback.")


class ConnectionUpdate(BaseModel):
    display_name: Name | None = None
    shared_with_contributors: bool | None = None
    sms_only_allowed: bool | None = Field(
        default=None, description="Whether the account takes SMS-only contacts (no email); "
        "the API cannot tell. Off, exports refuse SMS-only members (sms_not_allowed).")


class ConnectionPublic(BaseModel):
    id: str
    type: Literal["constant_contact"] = "constant_contact"
    display_name: str
    status: str
    shared_with_contributors: bool
    sms_only_allowed: bool
    account_name: str | None
    account_email: str | None
    export_user: str | None
    token_expires_at: datetime | None
    redirect_uri: str | None
    consent_text_version: str | None
    consent_by: str | None
    consent_at: datetime | None
    last_error: str | None
    created_at: datetime


class ConnectionOption(BaseModel):
    """What the export form's connection picker shows (no account details)."""

    id: str
    type: Literal["constant_contact"] = "constant_contact"
    display_name: str
    status: str


class AuthorizationStart(BaseModel):
    authorize_url: str = Field(description="Send a Constant Contact admin's browser here.")


class ConnectionCheck(BaseModel):
    ok: bool
    account_name: str | None
    account_email: str | None
    token_expires_at: datetime | None
    error: str | None


class DependentExport(BaseModel):
    id: str
    name: str


class ConnectionRemoval(BaseModel):
    exports: dict[Word, Literal["remove", "detach"]] = Field(
        default_factory=dict,
        description="For every export that uses the connection (by id): remove or detach it.")


class ContactListPublic(BaseModel):
    list_id: str
    name: str
    membership_count: int | None


def _username(db: Db, user_id: str | None) -> str | None:
    user = db.get(User, user_id) if user_id else None
    return user.username if user else None


def connection_public(db: Db, conn: Connection) -> ConnectionPublic:
    return ConnectionPublic(
        id=conn.id, display_name=conn.display_name, status=conn.status,
        shared_with_contributors=conn.shared_with_contributors,
        sms_only_allowed=bool(conn.sms_only_allowed),
        account_name=conn.account_name, account_email=conn.account_email,
        export_user=_username(db, conn.export_user_id), token_expires_at=conn.token_expires_at,
        redirect_uri=conn.redirect_uri, consent_text_version=conn.consent_text_version,
        consent_by=_username(db, conn.consent_by_id), consent_at=conn.consent_at,
        last_error=conn.last_error, created_at=conn.created_at)


@router.get("")
def connections(db: Db, admin: AdminUser) -> list[ConnectionPublic]:
    """Every connection (admins only)."""
    return [connection_public(db, c) for c in service.list_connections(db, actor=admin)]


@router.post("", status_code=status.HTTP_201_CREATED)
def add_connection(body: ConnectionCreate, request: Request, db: Db, services: Services,
                   admin: AdminUser) -> ConnectionPublic:
    """Save a connection (the privacy consent is required); authorize it next."""
    conn = service.create_connection(db, actor=admin, spec=service.ConnectionSpec(
        display_name=body.display_name, client_id=body.client_id,
        client_secret=body.client_secret.get_secret_value() if body.client_secret else None,
        consent=body.consent, shared_with_contributors=body.shared_with_contributors,
        redirect_uri=body.redirect_uri or services.public_base(request) + API_CALLBACK_PATH))
    db.commit()
    return connection_public(db, conn)


@router.get("/usable")
def usable(db: Db, user: CurrentUser) -> list[ConnectionOption]:
    """The connections the caller may pick for an export, grouped by type."""
    return [ConnectionOption(id=c.id, display_name=c.display_name, status=c.status)
            for c in sorted(service.usable_connections(db, actor=user),
                            key=lambda c: c.display_name)]


@router.get("/oauth/callback")
def oauth_callback(request: Request, db: Db, services: Services,
                   admin: AdminUser) -> ConnectionPublic:
    """Where Constant Contact sends the admin back: checks ``state``, stores the grant."""
    conn = finish_callback(db, actor=admin, query=request.url.query, services=services)
    db.commit()
    return connection_public(db, conn)


@router.get("/{connection_id}")
def connection(connection_id: ObjectId, db: Db, _admin: AdminUser) -> ConnectionPublic:
    """One connection (admins only)."""
    return connection_public(db, service.get_connection(db, name_or_id=connection_id))


@router.patch("/{connection_id}")
def edit_connection(connection_id: ObjectId, body: ConnectionUpdate, db: Db,
                    admin: AdminUser) -> ConnectionPublic:
    """Rename a connection, change who may use it or whether it sends SMS-only contacts."""
    conn = service.update_connection(
        db, actor=admin, connection=service.get_connection(db, name_or_id=connection_id),
        changes=service.ConnectionChanges(
            display_name=body.display_name, shared_with_contributors=body.shared_with_contributors,
            sms_only_allowed=body.sms_only_allowed))
    db.commit()
    return connection_public(db, conn)


@router.post("/{connection_id}/authorize")
def authorize(connection_id: ObjectId, db: Db, services: Services,
              admin: AdminUser) -> AuthorizationStart:
    """Start (or redo: re-authorize) the OAuth sign-in; returns the URL to open."""
    url = service.start_authorization(
        db, actor=admin, connection=service.get_connection(db, name_or_id=connection_id),
        settings=services.settings)
    db.commit()
    return AuthorizationStart(authorize_url=url)


@router.post("/{connection_id}/test")
def test(connection_id: ObjectId, db: Db, services: Services,
         admin: AdminUser) -> ConnectionCheck:
    """Call Constant Contact with the stored grant and report the account it reaches."""
    result = service.check_connection(
        db, actor=admin, connection=service.get_connection(db, name_or_id=connection_id),
        settings=services.settings, engine=services.runtime.engine, metrics=services.metrics)
    db.commit()
    return ConnectionCheck(ok=result.ok, account_name=result.account_name,
                           account_email=result.account_email,
                           token_expires_at=result.token_expires_at, error=result.error)


@router.get("/{connection_id}/dependents")
def dependents(connection_id: ObjectId, db: Db, _admin: AdminUser) -> list[DependentExport]:
    """The exports that use a connection (to decide remove or detach for each)."""
    conn = service.get_connection(db, name_or_id=connection_id)
    return [DependentExport(id=e.id, name=e.name)
            for e in service.dependent_exports(db, connection=conn)]


@router.post("/{connection_id}/remove", status_code=status.HTTP_204_NO_CONTENT)
def remove(connection_id: ObjectId, body: ConnectionRemoval, db: Db, services: Services,
           admin: AdminUser) -> None:
    """Revoke and delete a connection; every dependent export is removed or detached."""
    service.remove_connection(
        db, actor=admin, connection=service.get_connection(db, name_or_id=connection_id),
        settings=services.settings, exports=dict(body.exports))
    db.commit()


@router.get("/{connection_id}/lists")
def lists(connection_id: ObjectId, db: Db, services: Services,
          user: CurrentUser) -> list[ContactListPublic]:
    """The Constant Contact lists of the connection's account (for the list picker)."""
    require_role(user, Role.ADMIN, Role.CONTRIBUTOR)
    conn = access.require_usable(user, service.get_connection(db, name_or_id=connection_id))
    return [ContactListPublic(list_id=c.list_id, name=c.name,
                              membership_count=c.membership_count)
            for c in account_lists(conn, settings=services.settings,
                                   engine=services.runtime.engine, metrics=services.metrics)]


class SuppressionPublic(BaseModel):
    """A connection's suppression set: how many, and when it was read (never an email)."""

    suppressed: int = Field(description="Contacts Constant Contact shows unsubscribed, held "
                            "back from every export over this connection.")
    synced_at: datetime | None
    full_synced_at: datetime | None
    last_result: dict[str, object]


class SuppressionSyncRequest(BaseModel):
    full: bool = Field(default=False, description="Read every unsubscribed contact (not only "
                       "those since the last read) and lift those no longer unsubscribed.")


@router.get("/{connection_id}/suppression")
def suppression(connection_id: ObjectId, db: Db, services: Services,
                admin: AdminUser) -> SuppressionPublic:
    """How many contacts the connection suppresses and when its unsubscribes were read."""
    found = suppressions.connection_suppression(
        actor=admin, connection=service.get_connection(db, name_or_id=connection_id),
        engine=services.runtime.engine)
    return SuppressionPublic(suppressed=found.suppressed, synced_at=found.synced_at,
                             full_synced_at=found.full_synced_at,
                             last_result=found.last_result)


@router.post("/{connection_id}/sync-unsubscribes")
def sync_unsubscribes(connection_id: ObjectId, db: Db, services: Services, admin: AdminUser,
                      body: SuppressionSyncRequest | None = None) -> SuppressionPublic:
    """Read the account's unsubscribed contacts into the suppression set now."""
    conn = service.get_connection(db, name_or_id=connection_id)
    suppressions.sync_connection(db, actor=admin, connection=conn,
                                 settings=services.settings, engine=services.runtime.engine,
                                 full=bool(body and body.full), metrics=services.metrics)
    db.commit()
    return suppression(connection_id, db, services, admin)
