"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from segment_export import __version__
from segment_export.api.deps import Services
from segment_export.errors import RetriableError
from segment_export.languages import N_

router = APIRouter(prefix="/api", tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]
    version: str


@router.get("/health")
def health() -> Health:
    """Liveness: the process answers (no dependency is checked)."""
    return Health(status="ok", version=__version__)


@router.get("/ready", responses={503: {"description": "The state database is not reachable"}})
def ready(services: Services) -> Health:
    """Readiness: the state database answers a query."""
    try:
        with services.runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise RetriableError(N_("The state database is not reachable")) from exc
    return Health(status="ok", version=__version__)
