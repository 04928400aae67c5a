"""JSON log lines: every line a run writes carries its run id, and no secret or email leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from segment_export.log import configure_logging
from tests.ops.helpers import prepare
from tests.world import CLIENT_SECRET, World


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("segment_export")
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_every_line_of_a_run_is_json_with_its_run_id(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    export = prepare(world, 120, bad=2, batch=50)
    world.control.expire_tokens()  # a token refresh inside the run logs too
    capsys.readouterr()
    configure_logging("DEBUG", "json")
    run = world.run(export)
    lines = capsys.readouterr().err.splitlines()

    records = [json.loads(line) for line in lines]  # every line is one JSON object
    # The in-process emulator stands for Constant Contact: its lines are not the run's.
    ours = [r for r in records if not r["name"].startswith("segment_export.emulator")]
    assert len(ours) >= 5, records
    assert {r.get("run_id") for r in ours} == {run.id}
    assert any("refreshed the access token" in r["message"] for r in ours)
    assert all({"time", "level", "name", "message"} <= r.keys() for r in ours)
    text = "\n".join(lines)
    assert CLIENT_SECRET not in text
