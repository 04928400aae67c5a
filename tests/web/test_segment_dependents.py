"""Data > Segments over HTTP: the exports a segment feeds are shown before a change, a
contributor cannot change a segment behind an unshared connection's export, and rule values
out of bounds come back on the form (issue #17, points 1 and 6)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_export.db.models import Segment
from tests.api.harness import AppWorld, app_world, make_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    data_dir: Path = tmp_path_factory.mktemp("segment-pages")
    with app_world(make_settings(data_dir)) as site:
        yield site


def _expression(world: AppWorld, segment_id: str) -> str | None:
    with world.runtime.sessions() as db:
        found = db.get(Segment, segment_id)
        return None if found is None else found.expression


def test_segment_page_shows_its_exports_and_warns_before_saving(world: AppWorld) -> None:
    segment = world.segment()
    export = world.export(connection=world.connection(shared=True), segment=segment)
    page = world.browser("contributor").get(f"/data/segments/{segment.id}")
    assert page.status_code == 200
    assert "Sent by 1 export" in page.text
    assert f'href="/data/exports/{export.id}"' in page.text
    assert export.name in page.text
    assert "Saving changes what 1 export sends" in page.text
    assert "Save segment" in page.text
    delete = world.browser("contributor").get(f"/data/segments/{segment.id}/delete")
    assert export.name in delete.text
    assert "Remove the segment from these exports first" in delete.text
    assert "Delete segment</button>" not in delete.text


def test_contributor_cannot_change_a_segment_an_unshared_export_sends(world: AppWorld) -> None:
    segment = world.segment()
    export = world.export(connection=world.connection(shared=False), segment=segment)
    contributor = world.browser("contributor")
    page = contributor.get(f"/data/segments/{segment.id}")
    assert page.status_code == 200
    assert export.name in page.text
    assert "you may not change this export" in page.text
    assert "but not change it" in page.text
    assert "Save segment</button>" not in page.text
    assert f"/data/segments/{segment.id}/delete" not in page.text
    saved = contributor.post(f"/data/segments/{segment.id}", {
        "name": segment.name, "kind": "expression", "expression": "country IS NOT NULL",
        "active": "true"})
    assert saved.status_code == 403
    assert "may not change the segment" in saved.text
    assert _expression(world, segment.id) == "country = 'DE'"
    confirm = contributor.get(f"/data/segments/{segment.id}/delete")
    assert "You may not delete this segment" in confirm.text
    assert contributor.post(f"/data/segments/{segment.id}/delete", {}).status_code == 403
    assert _expression(world, segment.id) == "country = 'DE'"
    # An admin sees the same exports, may save, and is warned first.
    admin = world.browser("admin")
    assert "Saving changes what 1 export sends" in admin.get(
        f"/data/segments/{segment.id}").text
    done = admin.post(f"/data/segments/{segment.id}", {
        "name": segment.name, "kind": "expression", "expression": "country IS NOT NULL",
        "active": "true"})
    assert done.status_code == 303, done.text[:300]
    assert _expression(world, segment.id) == "country IS NOT NULL"


@pytest.mark.parametrize(("kind", "form", "message"), [
    ("json", {"rule_json": json.dumps({"all": [
        {"field": "last_purchase_date", "op": "within_last_days", "value": 10**6}]})},
     "from 0 to 36,500"),
    ("builder", {"cond_field": "last_purchase_date", "cond_op": "within_last_days",
                 "cond_value": "1000000"}, "from 0 to 36,500"),
    ("builder", {"cond_field": "customer_id", "cond_op": "gt",
                 "cond_value": "9" * 30}, "64 bits"),
])
def test_rule_values_out_of_bounds_show_on_the_form(world: AppWorld, kind: str,
                                                    form: dict[str, str], message: str) -> None:
    web = world.browser("contributor")
    created = web.post("/data/segments/new", {"name": "Too far back", "kind": kind, **form})
    assert created.status_code == 422, created.text[:500]
    assert message in created.text
    assert 'role="alert"' in created.text
    previewed = web.post("/data/segments/preview", {"kind": kind, **form})
    assert previewed.status_code == 200
    assert message in previewed.text
