"""Admin > Connections: the add-connection wizard, test, re-authorize, remove."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from segment_export.api.deps import AdminUser, Db, Services
from segment_export.api.oauth import WEB_CALLBACK_PATH, finish_callback
from segment_export.api.types import ObjectId
from segment_export.db.models import User
from segment_export.definitions import connections as service
from segment_export.errors import ConfigurationError, DataError
from segment_export.exports import suppression as suppressions
from segment_export.languages import N_
from segment_export.web.render import number, redirect, render, translate

router = APIRouter(prefix="/admin/connections", include_in_schema=False)


@router.get("")
def connections(request: Request, db: Db, admin: AdminUser) -> Response:
    """Every connection with its status, account and who may use it."""
    rows = service.list_connections(db, actor=admin)
    usage = {c.id: len(service.dependent_exports(db, connection=c)) for c in rows}
    return render(request, "connections/list.html", connections=rows, usage=usage)


@router.get("/new")
def new_connection(request: Request, _admin: AdminUser) -> Response:
    """Step 1 of the wizard: name, who can use it, the application's key, I agree."""
    return render(request, "connections/new.html", form={}, consent_text=service.CONSENT_TEXT)


@router.post("/new")
def create_connection(
    request: Request, db: Db, services: Services, admin: AdminUser,
    display_name: Annotated[str, Form(max_length=200)] = "",
    client_id: Annotated[str, Form(max_length=200)] = "",
    client_secret: Annotated[str, Form(max_length=1024)] = "",
    usable_by: Annotated[Literal["admins", "contributors"], Form()] = "admins",
    consent: Annotated[bool, Form()] = False,
) -> Response:
    """Save the connection and go to Constant Contact's consent page (Connect)."""
    try:
        conn = service.create_connection(db, actor=admin, spec=service.ConnectionSpec(
            display_name=display_name, client_id=client_id,
            client_secret=client_secret or None, consent=consent,
            shared_with_contributors=usable_by == "contributors",
            redirect_uri=services.public_base(request) + WEB_CALLBACK_PATH))
        url = service.start_authorization(db, actor=admin, connection=conn,
                                          settings=services.settings)
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return render(request, "connections/new.html", status=422, error=exc,
                      consent_text=service.CONSENT_TEXT,
                      form={"display_name": display_name, "client_id": client_id,
                            "usable_by": usable_by, "consent": consent})
    db.commit()
    return redirect(url)


@router.get("/callback")
def callback(request: Request, db: Db, services: Services, admin: AdminUser) -> Response:
    """Back from Constant Contact: check the state, store the grant, then review and save."""
    conn = finish_callback(db, actor=admin, query=request.url.query, services=services)
    db.commit()
    return redirect(f"/admin/connections/{conn.id}?step=connected",
                    notice=translate(request, N_("Connected to %(account)s."),
                                     account=conn.account_name or translate(
                                         request, N_("the Constant Contact account"))))


@router.get("/{connection_id}")
def connection(request: Request, connection_id: ObjectId, db: Db, services: Services,
               _admin: AdminUser, step: str | None = None) -> Response:
    """A connection: account reached, export user, consent record; save, test, re-authorize."""
    conn = service.get_connection(db, name_or_id=connection_id)
    people = {u.id: u.username for u in
              (db.get(User, i) for i in {conn.export_user_id, conn.consent_by_id} if i) if u}
    return render(request, "connections/detail.html", connection=conn, people=people,
                  finishing=step == "connected", test=None,
                  dependents=service.dependent_exports(db, connection=conn),
                  suppression=suppressions.suppression_status(
                      services.runtime.engine, connection_id=conn.id))


@router.post("/{connection_id}")
def save_connection(
    request: Request, connection_id: ObjectId, db: Db, admin: AdminUser,
    display_name: Annotated[str, Form(max_length=200)],
    usable_by: Annotated[Literal["admins", "contributors"], Form()] = "admins",
    sms_only_allowed: Annotated[bool, Form()] = False,
) -> Response:
    """Save the name and who may use the connection (the wizard's last step, or an edit)."""
    conn = service.get_connection(db, name_or_id=connection_id)
    service.update_connection(db, actor=admin, connection=conn, changes=service.ConnectionChanges(
        display_name=display_name, shared_with_contributors=usable_by == "contributors",
        sms_only_allowed=sms_only_allowed))
    db.commit()
    return redirect("/admin/connections", notice=translate(
        request, N_("Saved the connection '%(name)s'."), name=conn.display_name))


@router.post("/{connection_id}/test")
def test_connection(request: Request, connection_id: ObjectId, db: Db, services: Services,
                    admin: AdminUser) -> Response:
    """Call Constant Contact and show the account the connection reaches."""
    conn = service.get_connection(db, name_or_id=connection_id)
    result = service.check_connection(db, actor=admin, connection=conn,
                                      settings=services.settings,
                                      engine=services.runtime.engine,
                                      metrics=services.metrics)
    db.commit()
    people = {u.id: u.username for u in
              (db.get(User, i) for i in {conn.export_user_id, conn.consent_by_id} if i) if u}
    return render(request, "connections/detail.html", connection=conn, people=people,
                  finishing=False, test=result,
                  dependents=service.dependent_exports(db, connection=conn),
                  suppression=suppressions.suppression_status(
                      services.runtime.engine, connection_id=conn.id))


@router.post("/{connection_id}/sync-unsubscribes")
def sync_unsubscribes(request: Request, connection_id: ObjectId, db: Db, services: Services,
                      admin: AdminUser) -> Response:
    """Read the account's unsubscribed contacts into the suppression set now."""
    conn = service.get_connection(db, name_or_id=connection_id)
    result = suppressions.sync_connection(db, actor=admin, connection=conn,
                                          settings=services.settings,
                                          engine=services.runtime.engine,
                                          metrics=services.metrics)
    db.commit()
    return redirect(f"/admin/connections/{conn.id}",
                    notice=translate(request, N_("Read %(read)s unsubscribed contacts: %(added)s "
                                                 "new; %(suppressed)s suppressed."),
                                     read=number(result.read, request),
                                     added=number(result.added, request),
                                     suppressed=number(result.suppressed, request)))


@router.post("/{connection_id}/authorize")
def reauthorize(request: Request, connection_id: ObjectId, db: Db, services: Services,
                admin: AdminUser) -> Response:
    """Sign in to Constant Contact again (re-authorize)."""
    conn = service.get_connection(db, name_or_id=connection_id)
    if conn.redirect_uri is None:
        conn.redirect_uri = services.public_base(request) + WEB_CALLBACK_PATH
    url = service.start_authorization(db, actor=admin, connection=conn,
                                      settings=services.settings)
    db.commit()
    return redirect(url)


@router.get("/{connection_id}/remove")
def confirm_remove(request: Request, connection_id: ObjectId, db: Db,
                   _admin: AdminUser) -> Response:
    """What removing the connection does, and remove or detach for each export using it."""
    conn = service.get_connection(db, name_or_id=connection_id)
    return render(request, "connections/remove.html", connection=conn,
                  dependents=service.dependent_exports(db, connection=conn))


@router.post("/{connection_id}/remove")
def remove(request: Request, connection_id: ObjectId, db: Db, services: Services,
           admin: AdminUser, choice: Annotated[list[str], Form()] = []) -> Response:  # noqa: B006
    """Revoke and delete the connection, removing or detaching each dependent export."""
    exports: dict[str, Literal["remove", "detach"]] = {}
    for item in choice:
        export_id, _, action = item.rpartition(":")
        if action in ("remove", "detach"):
            exports[export_id] = cast(Literal["remove", "detach"], action)
    conn = service.get_connection(db, name_or_id=connection_id)
    name = conn.display_name
    service.remove_connection(db, actor=admin, connection=conn, settings=services.settings,
                              exports=exports)
    db.commit()
    return redirect("/admin/connections", notice=translate(
        request, N_("Removed the connection '%(name)s'."), name=name))
