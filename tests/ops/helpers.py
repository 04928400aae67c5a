"""What the operations tests share: people to export, snapshots of the state store."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from segment_export.config import Settings
from segment_export.db.models import Connection, Export, RejectedRow, Run, RunBatch
from segment_export.exports.delivery import load_members
from tests.world import World


def people(n: int, *, bad: int = 0) -> list[dict[str, object]]:
    """``n`` exportable profiles, the last ``bad`` of them with an invalid email."""
    rows: list[dict[str, object]] = [
        {"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
         "last_name": "Doe", "country": "DE"} for i in range(1, n + 1)]
    for row in rows[n - bad:]:
        row["email"] = f"not-an-email-{row['customer_id']}"
    return rows


def expected(n: int, *, bad: int = 0) -> set[str]:
    return {f"person{i}@example.com" for i in range(1, n - bad + 1)}


def prepare(world: World, n: int, *, bad: int = 0, batch: int = 100, **spec: Any) -> Export:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": batch})
    world.load_profiles(people(n, bad=bad))
    return world.export("ops", [world.segment("all", "country = 'DE'")], **spec)


def imports(world: World) -> list[Any]:
    return [r for r in world.control.requests() if r.path.endswith("contacts_json_import")]


def snapshot(engine: Engine) -> dict[str, Any]:
    """What a restore must bring back, in comparable form."""
    with Session(engine) as session:
        return {
            "exports": sorted((e.id, e.name, e.list_id, e.mode, tuple(sorted(e.mapping.items())),
                               tuple(e.segment_ids)) for e in session.scalars(select(Export))),
            "runs": sorted((r.id, r.status, r.attempt, repr(sorted(r.counts.items())))
                           for r in session.scalars(select(Run))),
            "connections": sorted((c.id, c.display_name, c.status, c.client_id, c.refresh_token)
                                  for c in session.scalars(select(Connection))),
            "members": sorted(e for export_id in session.scalars(select(Export.id))
                              for e in _delivered(engine, export_id)),
            "rejected": session.scalar(select(func.count()).select_from(RejectedRow)),
            "batches": session.scalar(select(func.count()).select_from(RunBatch)),
        }


def _delivered(engine: Engine, export_id: str) -> list[str]:
    emails = load_members(engine, export_id, emails=True).emails
    return emails.to_pylist() if emails is not None else []


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a CLI process needs to act on ``settings``' installation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENT_EXPORT_")}
    env.update({
        "SEGMENT_EXPORT_DATA_DIR": str(settings.data_dir),
        "SEGMENT_EXPORT_CC_API_URL": settings.cc_api_url,
        "SEGMENT_EXPORT_CC_AUTH_URL": settings.cc_auth_url,
        "SEGMENT_EXPORT_CC_REQUESTS_PER_SECOND": str(settings.cc_requests_per_second),
        "SEGMENT_EXPORT_IMPORT_BATCH_CONTACTS": str(settings.import_batch_contacts),
    })
    if settings.secret_key is not None:
        env["SEGMENT_EXPORT_SECRET_KEY"] = settings.secret_key.get_secret_value()
    env.update(extra)
    return env
