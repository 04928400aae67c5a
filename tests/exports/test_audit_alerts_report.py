"""Audit log, failure alerts, the formula-safe rejected-rows CSV and roles on exports."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from segment_export.access import permissions
from segment_export.audit import list_events
from segment_export.db.models import AuditEvent, SystemSetting
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.errors import ConfigurationError, PermissionDeniedError
from segment_export.exports.alerts import set_webhook
from segment_export.exports.runs import rejected_rows_csv, request_run
from segment_export.users import Role, UserSpec, create_user
from tests.world import World


def test_every_change_and_transfer_is_audited(world: World) -> None:
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    export = world.export("audited", [world.segment("all", "country = 'DE'")])
    world.run(export)
    with world.sessions() as session:
        actions = [e.action for e in reversed(list_events(session, limit=100))]
        transfer = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "run.requested")).one()
    assert actions[:3] == ["user.created", "connection.created", "connection.authorized"]
    assert "export.created" in actions
    assert transfer.actor_name == "admin"
    assert transfer.target_id == export.id
    with world.sessions() as session:
        everything = json.dumps([e.details for e in list_events(session, limit=100)])
    from tests.world import CLIENT_SECRET

    assert CLIENT_SECRET not in everything


def test_failed_run_fires_the_webhook(world: World,
                                      webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    with world.sessions.begin() as session:
        set_webhook(session, actor=world.admin, url=url)
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    segment = world.segment("all", "country = 'DE'")
    with world.sessions.begin() as session:
        export = create_export(session, actor=world.admin, spec=ExportSpec(
            name="missing list", connection_id=world.connection.id,
            list_id="00000000-0000-4000-8000-000000000000", mapping={"email": "email"},
            segment_ids=[segment]))
    run = world.run(export)
    assert run.status == "failed"
    assert [r["event"] for r in received] == ["run.failed"]
    assert received[0]["run_id"] == run.id


def test_rejection_threshold_alert(world: World, webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    with world.sessions.begin() as session:
        session.add(SystemSetting(key="alerts", value={"webhook_url": url}))
    world.load_profiles([
        {"customer_id": 1, "email": "good@example.com", "first_name": "A", "last_name": "B",
         "country": "DE"},
        {"customer_id": 2, "email": "=HYPERLINK(\"http://x\")", "first_name": "A",
         "last_name": "B", "country": "DE"},
    ])
    export = world.export("thresholded", [world.segment("all", "country = 'DE'")],
                          rejected_alert_threshold=0.25)
    run = world.run(export)
    assert run.status == "succeeded_with_rejections"
    assert [r["event"] for r in received] == ["run.rejections_over_threshold"]

    with world.sessions() as session:
        text = "".join(rejected_rows_csv(session, run=run))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [{"customer_id": "2", "email": "'=HYPERLINK(\"http://x\")",
                     "reason": "invalid_email", "detail": "no @ in address"}]


def test_webhook_setting_is_admin_only_and_checked(world: World) -> None:
    with world.sessions.begin() as session:
        viewer = create_user(
            session, spec=UserSpec(username="val", role=Role.VIEWER), actor=world.admin
        )
    with world.sessions() as session, pytest.raises(PermissionDeniedError):
        set_webhook(session, actor=viewer, url="https://hooks.example.com/x")
    with world.sessions() as session, pytest.raises(ConfigurationError, match="http"):
        set_webhook(session, actor=world.admin, url="ftp://nowhere")


def test_roles_decide_who_manages_exports(world: World) -> None:
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    export = world.export("roles", [world.segment("all", "country = 'DE'")])
    with world.sessions.begin() as session:
        contributor = create_user(
            session, spec=UserSpec(username="cory", role=Role.CONTRIBUTOR), actor=world.admin
        )
        viewer = create_user(
            session, spec=UserSpec(username="vic", role=Role.VIEWER), actor=world.admin
        )
    connection = world.connection
    assert permissions(contributor, export, connection) == ["view", "edit", "run", "remove"]
    assert permissions(viewer, export, connection) == ["view"]
    connection.shared_with_contributors = False
    assert permissions(contributor, export, connection) == ["view"]
    with world.sessions() as session, pytest.raises(PermissionDeniedError):
        request_run(session, actor=viewer, export=export)
