"""The Constant Contact emulator (sandbox mode): the V3 API and authorization server parts the
product uses, with Constant Contact's limits, shapes and failure modes, in memory."""

from segment_export.emulator.activities import ActivityKind
from segment_export.emulator.app import create_emulator_app
from segment_export.emulator.backend import Backend
from segment_export.emulator.client import EmulatorControl, RequestInfo, SeedResult
from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.oauth import pkce_challenge
from segment_export.emulator.schemas import SeedApp, SeedList
from segment_export.emulator.server import EmulatorServer, serve

__all__ = [
    "ActivityKind",
    "Backend",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorServer",
    "RequestInfo",
    "SeedApp",
    "SeedList",
    "SeedResult",
    "create_emulator_app",
    "pkce_challenge",
    "serve",
]
