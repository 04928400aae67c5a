"""The state store on SQLite and PostgreSQL: migrations, encrypted secrets, aware timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings, load_settings
from segment_export.db import make_engine, upgrade_database
from segment_export.db.engine import current_revision
from segment_export.db.models import Connection, Export, Run, RunBatch, User
from segment_export.errors import ConfigurationError

ACCESS = "eyJhbGciOi-ACCESS-TOKEN-plaintext-0123456789"
REFRESH = "REFRESH-TOKEN-plaintext-abcdefghijklmnopqrstu"
CLIENT_SECRET = "CLIENT-SECRET-plaintext-zyxwvutsrqponm"


def _at_0004(model: type[Connection] | type[Export]) -> Any:
    """The model's table without the columns revision 0009 added (a Core insert of the ORM
    table would fill those from their defaults)."""
    from sqlalchemy import column, table

    later = {"sms_only_allowed", "phone_region"}
    return table(model.__tablename__, *(column(c.name, c.type)
                                        for c in model.__table__.columns if c.name not in later))


def _old_connection_and_export(session: Session) -> None:
    """``conn-1`` and its export ``export-1`` with the columns of revisions before 0009."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    session.execute(insert(_at_0004(Connection)).values(
        id="conn-1", display_name="Old", shared_with_contributors=False,
        status="connected", client_id="client-id-123", api_key_hash="k" * 64,
        token_version=0, created_at=start, updated_at=start))
    session.execute(insert(_at_0004(Export)).values(
        id="export-1", name="old", connection_id="conn-1", list_id="0" * 36,
        mapping={"email": "email"}, segment_ids=["s1"], mode="add_update",
        schedule_kind="manual", timezone="UTC", enabled=True,
        created_at=start, updated_at=start))


def _connection(**extra: object) -> Connection:
    return Connection(
        display_name="Newsletter (prod)",
        client_id="client-id-123",
        client_secret=CLIENT_SECRET,
        api_key_hash="k" * 64,
        access_token=ACCESS,
        refresh_token=REFRESH,
        token_expires_at=datetime.now(UTC) + timedelta(hours=24),
        **extra,
    )


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    expected = {"users", "connections", "exports", "runs", "run_batches", "audit_events",
                "segments", "segment_sizes", "rejected_rows", "export_members"}
    assert expected <= tables
    assert current_revision(engine) is not None


def test_upgrade_is_idempotent(engine: Engine) -> None:
    before = current_revision(engine)
    upgrade_database(engine)
    assert current_revision(engine) == before


def test_secrets_round_trip_and_are_ciphertext_in_the_table(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        session.add(_connection())
    with sessions() as session:
        conn = session.scalars(select(Connection)).one()
        assert (conn.access_token, conn.refresh_token, conn.client_secret) == (
            ACCESS, REFRESH, CLIENT_SECRET,
        )
        assert conn.token_expires_at is not None
        assert conn.token_expires_at.tzinfo is not None
    with engine.connect() as raw:
        row = raw.execute(
            text("SELECT access_token, refresh_token, client_secret, client_id FROM connections")
        ).one()
    for stored in row:
        blob = bytes(stored)
        for plain in (ACCESS, REFRESH, CLIENT_SECRET, "client-id-123"):
            assert plain.encode() not in blob


def test_sqlite_file_holds_no_plaintext_secret(settings: Settings) -> None:
    eng = make_engine(settings)
    upgrade_database(eng)
    with sessionmaker(eng).begin() as session:
        session.add(_connection())
    eng.dispose()  # checkpoint the WAL into the file
    for path in settings.data_dir.iterdir():
        if path.name.startswith("state.db"):
            data = path.read_bytes()
            for plain in (ACCESS, REFRESH, CLIENT_SECRET):
                assert plain.encode() not in data, f"{plain[:12]}… found in {path.name}"


def test_wrong_key_cannot_decrypt(settings: Settings, tmp_path: object) -> None:
    eng = make_engine(settings)
    upgrade_database(eng)
    with sessionmaker(eng).begin() as session:
        session.add(_connection())
    other = load_settings(data_dir=settings.data_dir, secret_key=Fernet.generate_key().decode())
    with sessionmaker(make_engine(other))() as session, pytest.raises(ConfigurationError):
        session.scalars(select(Connection)).one()


def test_old_key_still_decrypts_after_rotation(settings: Settings) -> None:
    eng = make_engine(settings)
    upgrade_database(eng)
    with sessionmaker(eng).begin() as session:
        session.add(_connection())
    old = settings.encryption_keys[0].decode()
    rotated = load_settings(
        data_dir=settings.data_dir, secret_key=f"{Fernet.generate_key().decode()},{old}"
    )
    with sessionmaker(make_engine(rotated))() as session:
        assert session.scalars(select(Connection)).one().refresh_token == REFRESH


def test_relations_and_cascades(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        admin = User(username="ada", role="admin")
        conn = _connection()
        session.add_all([admin, conn])
        session.flush()
        export = Export(
            name="VIP to newsletter", connection_id=conn.id, list_id="0" * 36,
            mapping={"email": "email"}, segment_ids=["s1"], created_by_id=admin.id,
        )
        session.add(export)
        session.flush()
        run = Run(export_id=export.id, counts={"in_segment": 3})
        session.add(run)
        session.flush()
        session.add(RunBatch(run_id=run.id, seq=0, kind="import", contacts=3))
    with sessions.begin() as session:
        session.delete(session.scalars(select(Export)).one())
    with sessions() as session:
        assert session.scalars(select(Run)).all() == []
        assert session.scalars(select(RunBatch)).all() == []


def test_naive_datetimes_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.add(User(username="x", role="viewer", created_at=datetime(2026, 1, 1)))  # noqa: DTZ001
        with pytest.raises(Exception, match="naive datetime"):
            session.flush()


def test_migrations_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from segment_export.db.models import Base

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "models changed without a migration: generate one"


def test_upgrade_keeps_the_oldest_of_duplicate_active_runs(engine: Engine) -> None:
    from alembic import command

    from segment_export.db import make_session_factory
    from segment_export.db.engine import alembic_config

    command.downgrade(alembic_config(engine), "0004")
    sessions = make_session_factory(engine)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with sessions.begin() as session:
        # Core inserts of the 0004 columns only: later revisions add user columns (0007),
        # connection and export columns (0009).
        session.execute(insert(User).values(id="user-ada", username="ada", role="admin"))
        session.execute(insert(_at_0004(Connection)).values(
            id="conn-1", display_name="Newsletter (prod)", shared_with_contributors=False,
            status="connected", client_id="client-id-123", api_key_hash="k" * 64,
            token_version=0, created_at=start, updated_at=start))
        session.execute(insert(_at_0004(Export)).values(
            id="export-1", name="raced", connection_id="conn-1", list_id="0" * 36,
            mapping={"email": "email"}, segment_ids=["s1"], mode="add_update",
            schedule_kind="manual", timezone="UTC", enabled=True, created_by_id="user-ada",
            created_at=start, updated_at=start))
        # What the race left before 0005: two active runs of one export, and a dry run.
        session.add_all([
            Run(id="run-b", export_id="export-1", status="queued",
                queued_at=start + timedelta(seconds=1)),
            Run(id="run-a", export_id="export-1", status="running", queued_at=start),
            Run(id="run-dry", export_id="export-1", status="queued", dry_run=True,
                queued_at=start),
        ])
    upgrade_database(engine)
    with sessions() as session:
        status = {r.id: r.status for r in session.scalars(select(Run))}
    assert status == {"run-a": "running", "run-b": "cancelled", "run-dry": "queued"}


def test_user_language_migration_round_trips(engine: Engine) -> None:
    from alembic import command

    from segment_export.db import make_session_factory
    from segment_export.db.engine import alembic_config

    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.add(User(username="siti", role="viewer", language="ms"))
    command.downgrade(alembic_config(engine), "0006")
    assert "language" not in {c["name"] for c in inspect(engine).get_columns("users")}
    with engine.connect() as conn:  # the user survives the downgrade
        assert conn.execute(text("SELECT username FROM users")).scalars().all() == ["siti"]
    upgrade_database(engine)
    with sessions() as session:
        user = session.scalars(select(User)).one()
    assert user.language is None  # not chosen: the browser or the environment decides


def test_upgrade_leaves_the_old_left_overs_of_ended_runs_unsettled(engine: Engine) -> None:
    """Migration 0008: batches that runs which had ended before it left in flight become
    ``unknown`` (later runs wrote the delivered state since); an active run's stay in flight."""
    from alembic import command

    from segment_export.db import make_session_factory
    from segment_export.db.engine import alembic_config

    command.downgrade(alembic_config(engine), "0007")
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        _old_connection_and_export(session)
        session.add_all([Run(id="run-failed", export_id="export-1", status="failed"),
                         Run(id="run-running", export_id="export-1", status="running")])
        session.flush()
        for run_id in ("run-failed", "run-running"):
            for seq, state in enumerate(("sent", "pending", "confirmed")):
                session.add(RunBatch(run_id=run_id, seq=seq, kind="import", state=state,
                                     contacts=1, nbytes=1))
    upgrade_database(engine)
    with sessions() as session:
        states = {(b.run_id, b.seq): b.state for b in session.scalars(select(RunBatch))}
    assert states == {("run-failed", 0): "unknown", ("run-failed", 1): "unknown",
                      ("run-failed", 2): "confirmed", ("run-running", 0): "sent",
                      ("run-running", 1): "pending", ("run-running", 2): "confirmed"}
    assert "ix_run_batches_unsettled" in {i["name"] for i in inspect(engine).get_indexes(
        "run_batches")}


def test_sms_migration_round_trips(engine: Engine) -> None:
    """0009: connections default to no SMS-only contacts, exports to the US phone region."""
    from alembic import command

    from segment_export.db import make_session_factory
    from segment_export.db.engine import alembic_config

    command.downgrade(alembic_config(engine), "0008")
    assert "sms_only_allowed" not in {c["name"] for c in inspect(engine).get_columns(
        "connections")}
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        _old_connection_and_export(session)
    upgrade_database(engine)
    with sessions() as session:
        connection = session.get(Connection, "conn-1")
        export = session.get(Export, "export-1")
        assert connection is not None
        assert export is not None
        assert connection.sms_only_allowed is False
        assert export.phone_region == "US"
