"""The main job on embedded defaults: a real export to the bundled Constant Contact emulator."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from segment_export.db.models import Connection, Run, User
from segment_export.definitions import connections
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.emulator.client import EmulatorControl
from segment_export.errors import DataError
from segment_export.exports.dependencies import RunDependencies
from segment_export.exports.runs import RunRequest, request_run, run_to_completion
from segment_export.languages import N_, Text, text
from segment_export.profiles import DuckDBProfileStore, ProfileImport, generate_profiles
from segment_export.segments.service import SegmentSpec, create_segment
from segment_export.users import ensure_admin

DEMO_CLIENT_ID = "demo-sandbox-client"
DEMO_CLIENT_SECRET = "demo-sandbox-secret-not-for-production"  # noqa: S105 - emulator only
DEMO_LIST = "segment-export demo"
DEMO_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class DemoResult:
    run: Run
    list_members: int
    emulator_url: str
    workspace: Path


def connect_sandbox(
    sessions: sessionmaker[Session],
    *,
    engine: Engine,
    settings: Settings,
    control: EmulatorControl,
    actor: User,
    display_name: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str = connections.DEFAULT_REDIRECT_URI,
    shared_with_contributors: bool = False,
) -> Connection:
    """Create a connection and authorize it through the emulator's consent page, as an admin
    clicking *Allow* would (sandbox mode: the demo, the benchmark and the tests)."""
    with sessions.begin() as session:
        conn = connections.create_connection(session, actor=actor, spec=connections.ConnectionSpec(
            display_name=display_name, client_id=client_id, client_secret=client_secret,
            consent=True, redirect_uri=redirect_uri,
            shared_with_contributors=shared_with_contributors))
        authorize_url = connections.start_authorization(session, actor=actor, connection=conn,
                                                        settings=settings)
    callback = control.approve_url(authorize_url)
    with sessions() as session:
        conn = session.merge(conn)
        connections.complete_authorization(session, actor=actor, connection=conn,
                                           callback_url=callback, settings=settings,
                                           engine=engine)
        session.commit()
    return conn


@contextmanager
def _emulator(url: str | None) -> Iterator[tuple[str, str, EmulatorControl]]:
    if url:
        base = url.rstrip("/")
        with EmulatorControl(base) as control:
            if not control.health():
                raise DataError(N_("No emulator answers at %(base)s"),
                                values={"base": base})
            yield f"{base}/v3", f"{base}/oauth2/default/v1", control
        return
    # Constant Contact's real limits (4 requests/s, 40,000 contacts and 4 MB per import); the
    # consent page approves itself because nobody signs in to a sandbox.
    with EmulatorServer(EmulatorConfig(auto_approve=True)) as emu:
        yield emu.api_url, emu.auth_url, emu.control


def run_demo(
    settings: Settings,
    *,
    profiles_file: Path | None = None,
    emulator_url: str | None = None,
    rows: int = DEMO_ROWS,
    say: Callable[[Text], None] = print,
    progress: Callable[[Run], None] | None = None,
) -> DemoResult:
    """Generate (or import) profiles, segment them, connect over OAuth, export, report."""
    workspace = settings.data_dir / "demo"
    shutil.rmtree(workspace, ignore_errors=True)  # every demo starts from a clean workspace
    with _emulator(emulator_url) as (api_url, auth_url, control):
        control.reset()
        seeded = control.seed(
            apps=[{"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
                   "redirect_uris": [connections.DEFAULT_REDIRECT_URI],
                   "name": "segment-export demo"}],
            account={"organization_name": "Demo Bakery (sandbox)",
                     "contact_email": "owner@demo-bakery.test"},
            lists=[DEMO_LIST],
            # An unsubscribed customer shows that a sync never re-subscribes anyone.
            contacts=[{"email": "unsubscribed.customer@example.com",
                       "permission_to_send": "unsubscribed"}],
        )
        local = settings.model_copy(update={"data_dir": workspace, "database_url": None,
                                            "cc_api_url": api_url, "cc_auth_url": auth_url})
        engine = make_engine(local)
        upgrade_database(engine)
        sessions = make_session_factory(engine)
        store = DuckDBProfileStore(local.profiles_path)
        try:
            if profiles_file is None:
                table = generate_profiles(rows=rows, seed=7)
                emails = table.column("email").to_pylist()
                emails[3] = "unsubscribed.customer@example.com"
                table = table.set_column(1, "email", pa.array(emails))
                store.import_table(table, ProfileImport(id_column="customer_id"))
                say(text(N_("Generated %(count)s sample profiles."), count=rows))
                mapping = {"email": "email", "first_name": "first_name",
                           "last_name": "last_name", "city": "city", "country": "country",
                           "job_title": "job_title", "company_name": "company"}
                segment_rule = {"all": [{"field": "lifetime_value", "op": "ge", "value": 0}]}
                consent_field: str | None = "marketing_consent"
            else:
                summary = store.import_file(profiles_file, ProfileImport())
                say(text(N_("Imported %(count)s profiles from %(path)s."), count=summary.rows,
                         path=str(profiles_file)))
                schema = store.schema()
                mapping = {f: f for f in ("email", "first_name", "last_name") if f in schema}
                if "email" not in mapping:
                    raise DataError(N_("%(profiles_file)s has no 'email' column"),
                                    values={"profiles_file": profiles_file}, field="email")
                segment_rule = {"all": [{"field": store.id_column or "customer_id",
                                         "op": "is_not_empty"}]}
                consent_field = None
            with sessions.begin() as session:
                admin = ensure_admin(session)
            with sessions.begin() as session:
                segment = create_segment(
                    session, store, spec=SegmentSpec(name="Demo customers", rule=segment_rule)
                )
                say(text(N_("Segment %(name)s: %(count)s members."), name=repr(segment.name),
                         count=segment.size))
            conn = connect_sandbox(sessions, engine=engine, settings=local, control=control,
                                   actor=admin, display_name="Demo sandbox",
                                   client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET)
            say(text(N_("Connected over OAuth to %(account)s."), account=repr(conn.account_name)))
            with sessions.begin() as session:
                export = create_export(session, actor=admin, spec=ExportSpec(
                    name="Demo newsletter", connection_id=conn.id,
                    list_id=seeded.lists[DEMO_LIST], list_name=DEMO_LIST, mapping=mapping,
                    segment_ids=[segment.id], consent_field=consent_field))
                run = request_run(session, actor=admin, export=export, request=RunRequest())
            say(text(N_("Exporting to the list %(name)s at %(url)s ..."), name=repr(DEMO_LIST),
                     url=api_url))
            deps = RunDependencies(settings=local, engine=engine, sessions=sessions,
                                   store=store, progress=progress, poll_interval=0.25)
            finished = run_to_completion(run.id, deps=deps)
            members = len(control.list_members(seeded.lists[DEMO_LIST]))
        finally:
            store.close()
            engine.dispose()
        return DemoResult(finished, members, api_url, workspace)
