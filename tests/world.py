"""The `world` fixture: the emulator over real HTTP, a state store, profiles, a connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings
from segment_export.db.models import Connection, Export, User
from segment_export.definitions import connections
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.emulator.client import EmulatorControl
from segment_export.exports.dependencies import RunDependencies
from segment_export.exports.runs import RunRequest, request_run, run_to_completion
from segment_export.profiles import DuckDBProfileStore
from segment_export.profiles.imports import ProfileImport
from segment_export.segments.service import SegmentSpec, create_segment
from segment_export.users import ensure_admin

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret-0123456789"


@dataclass
class World:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: DuckDBProfileStore
    emulator: EmulatorServer
    control: EmulatorControl
    admin: User
    connection: Connection
    list_id: str

    def deps(self, **extra: Any) -> RunDependencies:
        return RunDependencies(settings=self.settings, engine=self.engine,
                               sessions=self.sessions, store=self.store, poll_interval=0.05,
                               client_options={"backoff_base": 0.02, "backoff_cap": 0.2},
                               **extra)

    def load_profiles(self, rows: list[dict[str, Any]]) -> None:
        self.store.import_table(pa.Table.from_pylist(rows), ProfileImport(id_column="customer_id"))

    def segment(self, name: str, expression: str) -> str:
        with self.sessions.begin() as session:
            return create_segment(
                session, self.store, spec=SegmentSpec(name=name, expression=expression)
            ).id

    def export(self, name: str, segment_ids: list[str], **spec: Any) -> Export:
        mapping = spec.pop("mapping", {"email": "email", "first_name": "first_name",
                                       "last_name": "last_name"})
        with self.sessions.begin() as session:
            return create_export(session, actor=self.admin, spec=ExportSpec(
                name=name, connection_id=self.connection.id, list_id=self.list_id,
                mapping=mapping, segment_ids=segment_ids, **spec))

    def run(self, export: Export, **options: Any) -> Any:
        with self.sessions.begin() as session:
            run = request_run(session, actor=self.admin, export=export,
                              request=RunRequest(**options))
        return run_to_completion(run.id, deps=self.deps(), backoff=0.01)

    def members(self) -> set[str]:
        return self.control.list_members(self.list_id)


@contextmanager
def open_world(settings: Settings, engine: Engine,
               config: EmulatorConfig | None = None) -> Iterator[World]:
    """An emulator on 127.0.0.1, a profile store and an authorized connection over ``engine``
    (a migrated state store): the `world` fixture, and the stateful benchmark outside pytest."""
    config = config or EmulatorConfig(requests_per_second=50, auto_approve=True)
    with EmulatorServer(config) as emu:
        fast = settings.model_copy(update={
            "cc_api_url": emu.api_url, "cc_auth_url": emu.auth_url,
            "cc_requests_per_second": 40.0})
        control = emu.control
        seeded = control.seed(
            apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [connections.DEFAULT_REDIRECT_URI]}],
            account={"organization_name": "Sandbox Bakery", "contact_email": "owner@bakery.test"},
            lists=["Newsletter"],
        )
        from segment_export.db import make_session_factory

        sessions = make_session_factory(engine)
        store = DuckDBProfileStore(fast.profiles_path)
        with sessions.begin() as session:
            admin = ensure_admin(session)
        conn = connect_sandbox(sessions, engine=engine, settings=fast, control=control,
                               actor=admin, display_name="Sandbox", client_id=CLIENT_ID,
                               client_secret=CLIENT_SECRET, shared_with_contributors=True)
        world = World(fast, engine, sessions, store, emu, control, admin, conn,
                      seeded.lists["Newsletter"])
        try:
            yield world
        finally:
            world.store.close()


@pytest.fixture
def world(sqlite_engine: Engine, settings: Settings) -> Iterator[World]:
    with open_world(settings, sqlite_engine) as opened:
        yield opened
