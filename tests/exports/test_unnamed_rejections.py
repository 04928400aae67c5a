"""Rows Constant Contact refuses without naming them (its ``activity_errors`` are free text):
nobody of that request may be remembered as delivered, so the refused row is sent again once
Constant Contact takes it, and its batch-mates are simply refreshed."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from sqlalchemy import select

from segment_export.constant_contact import Activity
from segment_export.db.models import RejectedRow
from segment_export.exports.delivery import read_verdict
from segment_export.exports.runs import rejected_rows_csv
from segment_export.segments.refresh import refresh_segments
from tests.world import World

FLAGGED = "p3@example.com"


def _people(n: int, *, leaving: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    return [{"customer_id": f"c{i}", "email": f"p{i}@example.com", "first_name": "A",
             "last_name": "B", "country": "DE"} for i in range(1, n + 1) if i not in leaving]


def test_free_text_errors_name_no_row_so_the_rejections_are_unnamed() -> None:
    activity = Activity.model_validate({
        "activity_id": "a1", "state": "completed",
        "status": {"items_total_count": 10, "person_count": 8, "correctable_count": 1,
                   "error_count": 1},
        "activity_errors": ["1 contact(s) were not imported because of correctable errors"]})
    verdict = read_verdict(activity, 10)
    assert verdict.rejected == 2
    assert verdict.refused_rows == {}
    assert verdict.unnamed_rejections == 2
    assert verdict.accepted == 8


@pytest.mark.parametrize("mode", ["add_update", "mirror"])
def test_a_row_refused_without_its_name_is_sent_again_and_nothing_is_lost(
        world: World, mode: str) -> None:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": 5})
    world.load_profiles(_people(10))
    export = world.export("unnamed", [world.segment("all", "country = 'DE'")], mode=mode)
    # Constant Contact has flagged one address for 48 hours (too many sign-up attempts): its
    # syntax passes our check, the import refuses it and says only how many it refused.
    world.control.set_config(flagged_emails=[FLAGGED])

    first = world.run(export)
    assert first.status == "succeeded_with_rejections", first.message
    assert first.counts["rejected_by_constant_contact"] == 1
    assert first.counts["refused_unnamed"] == 1
    assert "1 unnamed" in first.message
    assert world.members() == {f"p{i}@example.com" for i in range(1, 11)} - {FLAGGED}
    with world.sessions() as session:
        rows = session.scalars(select(RejectedRow).where(RejectedRow.run_id == first.id)).all()
        assert [(r.reason, r.customer_id, r.email) for r in rows] == [
            ("rejected_by_constant_contact", None, None)]
        assert "refused 1 of the 5 contacts" in (rows[0].detail or "")
        assert "correctable" in (rows[0].detail or "")  # Constant Contact's own words
        report = list(csv.DictReader(io.StringIO("".join(rejected_rows_csv(session,
                                                                           run=first)))))
    assert [r["reason"] for r in report] == ["rejected_by_constant_contact"]

    # The flag lapses; one batch-mate leaves the segment meanwhile.
    world.control.set_config(flagged_emails=[])
    world.load_profiles(_people(10, leaving=frozenset({4})))
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()
    second = world.run(export)
    assert second.status == "succeeded", second.message
    # The refused row and its three remaining batch-mates go again; the other batch does not.
    assert second.counts["sent"] == 4, second.counts
    expected = {f"p{i}@example.com" for i in range(1, 11)}
    if mode == "mirror":
        expected -= {"p4@example.com"}
        assert second.counts["removed"] == 1, second.counts
    assert world.members() == expected

    third = world.run(export)
    assert third.counts["sent"] == 0, third.counts
    assert third.counts.get("removed", 0) == 0
    assert world.members() == expected
