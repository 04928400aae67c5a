"""The emulator package's public surface is curated."""

from __future__ import annotations

import segment_export.emulator as emulator


def test_all_is_the_curated_surface() -> None:
    assert sorted(emulator.__all__) == [
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
    for name in emulator.__all__:
        assert getattr(emulator, name) is not None
