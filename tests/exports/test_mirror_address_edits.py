"""Kept contact ids and address edits, against the emulator over real HTTP: an address edit in
Constant Contact keeps the contact's id, so an id kept for a leaver may name someone else by
the next run. A kept id is used only when the contacts updated since it was learnt show it
still under its leaver's address; otherwise the leaver is looked up on the list.

(a) the leaver's contact edited to a newcomer's address: the newcomer stays, the leaver is
counted already off the list; (b) edited to an unrelated address: the contact stays (it is not
the leaver any more), the leaver is counted already off the list (no contact has its address
now); (c) no edits: still no contact export; the cost cap; ids kept before migration 0012;
(d) random edits between two runs (Hypothesis)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import select, update

from segment_export.db.models import ExportContactIds
from segment_export.db.types import utcnow
from segment_export.exports import mirror
from segment_export.exports.contact_ids import (
    MAX_ID_BLOCKS,
    kept_contact_ids,
    known_contact_ids,
    learn_contact_ids,
)
from tests.exports.test_mirror_contact_ids import (
    FIRST_WAVE,
    SECOND_WAVE,
    STRANGER,
    N,
    _contact_id,
    _learnt,
    _lookups,
    emails,
    key_of,
)
from tests.exports.test_mirror_resume import (
    assert_removal_counts,
    hand_add,
    people,
    refresh,
    remove_posts,
)
from tests.world import World

LEAVING = [*FIRST_WAVE, *SECOND_WAVE]
STAYING = emails(range(131, N + 1)) | {STRANGER}


def _edit(world: World, contact_id: str, address: str) -> None:
    """What an account user editing a contact's email address in Constant Contact does."""
    world.emulator.backend.update_contact(contact_id=contact_id, body={
        "email_address": {"address": address}, "update_source": "Account"})


def _listings(world: World, since: int) -> list[str]:
    """The requests that list the contacts updated since a moment."""
    found = [r.query for r in world.control.requests(since)
             if r.path.rstrip("/").endswith("/contacts") and "updated_after=" in r.query]
    assert all(f"lists={world.list_id}" in query for query in found)  # the list's only
    return found


def _second_wave(world: World, *extra: dict[str, object]) -> int:
    world.load_profiles([*people(N, leaving=LEAVING), *extra])
    refresh(world)
    return world.control.requests()[-1].seq


def test_a_leaver_edited_to_a_newcomers_address_leaves_the_newcomer_on_the_list(
        world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    kept = _contact_id(world, "m100@example.com")
    # Someone edits m100's contact to the address of a person about to join the segment: the
    # run's import finds that contact by its new address, so the kept id is the newcomer's.
    _edit(world, kept, "newcomer@example.com")
    since = _second_wave(world, {"customer_id": N + 1, "email": "newcomer@example.com",
                                 "first_name": "New", "last_name": "Comer", "country": "DE"})

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert _contact_id(world, "newcomer@example.com") == kept  # the id the leaver had
    assert world.members() == STAYING | {"newcomer@example.com"}
    assert (done.counts["removed"], done.counts["already_off_list"]) == (len(SECOND_WAVE) - 1, 1)
    assert_removal_counts(done, len(SECOND_WAVE))
    assert len(_listings(world, since)) == 1
    # Only the leaver with the moved id was looked up (by email: one is under the 40 that
    # take the list's export), and its id is forgotten.
    (lookup,) = _lookups(world, since)
    assert lookup.startswith("GET ")
    assert "email=m100%40example.com" in lookup
    assert known_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                             keys=np.array([key_of("m100@example.com")])) == {}


def test_a_leaver_edited_to_an_unrelated_address_is_not_removed_under_it(world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    kept = _contact_id(world, "m100@example.com")
    _edit(world, kept, "Someone.Else@elsewhere.test")
    since = _second_wave(world)

    done = world.run(export)

    assert done.status == "succeeded", done.message
    # The contact is someone else's now (or the same person under an address this export
    # never sent): not this export's to remove. No contact has the leaver's address any more,
    # so the leaver counts as already off the list.
    assert world.members() == STAYING | {"someone.else@elsewhere.test"}
    assert (done.counts["removed"], done.counts["already_off_list"]) == (len(SECOND_WAVE) - 1, 1)
    assert_removal_counts(done, len(SECOND_WAVE))
    assert [r for r in _lookups(world, since) if r.startswith("POST")] == []


def test_without_edits_the_next_run_needs_no_contact_export(world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    since = _second_wave(world)

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert _lookups(world, since) == []  # no contact export, no lookup one by one
    (listing,) = _listings(world, since)  # one page: its count is within the cap
    assert "include_count=true" in listing
    assert remove_posts(world, since) == 1
    assert world.members() == STAYING
    assert (done.counts["removed"], done.counts["already_off_list"]) == (len(SECOND_WAVE), 0)


def test_a_listing_dearer_than_the_lists_export_falls_back_to_the_export(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    # 600 contacts put on the list by hand since the ids were learnt: the list's updated
    # contacts take two pages to list, more than the one worth it here.
    monkeypatch.setattr(mirror, "UPDATED_LISTING_PAGES", 1)
    strangers = {f"o{i}@other.test" for i in range(600)}
    hand_add(world, world.list_id, *sorted(strangers))
    kept = _contact_id(world, "m100@example.com")
    _edit(world, kept, "someone.else@elsewhere.test")
    since = _second_wave(world)

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert len(_listings(world, since)) == 1  # the first page's count was enough to stop
    assert sum(1 for r in _lookups(world, since) if r.startswith("POST")) == 1
    assert world.members() == STAYING | strangers | {"someone.else@elsewhere.test"}
    assert_removal_counts(done, len(SECOND_WAVE))
    assert done.counts["already_off_list"] == 1


def test_a_listing_over_the_cap_stops_at_its_first_page_however_large_the_list(
        world: World) -> None:
    """The cap is a few pages, not the list's size: 2,100 contacts updated on the list (five
    pages) are not paged through; one page's count sends the leavers to the list's export."""
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    assert mirror.UPDATED_LISTING_PAGES == 4
    strangers = {f"o{i}@other.test" for i in range(2_100)}
    hand_add(world, world.list_id, *sorted(strangers))
    since = _second_wave(world)

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert len(_listings(world, since)) == 1
    assert sum(1 for r in _lookups(world, since) if r.startswith("POST")) == 1
    assert world.members() == STAYING | strangers
    assert_removal_counts(done, len(SECOND_WAVE))


def test_ids_kept_before_learnt_at_are_not_used(world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    with world.engine.begin() as conn:  # as migration 0012 leaves the blocks kept before it
        conn.execute(update(ExportContactIds).values(learnt_at=None))
    assert known_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                             keys=np.array([key_of("m150@example.com")])) == {}
    since = _second_wave(world)

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert _listings(world, since) == []
    assert sum(1 for r in _lookups(world, since) if r.startswith("POST")) == 1
    assert world.members() == STAYING
    # The export relearnt them, with a learnt_at.
    assert known_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                             keys=np.array([key_of("m150@example.com")])) == {
        key_of("m150@example.com"): _contact_id(world, "m150@example.com")}


_examples = itertools.count(1)
EDITS = st.sampled_from(["unrelated", "newcomer", "and back"])


@examples(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(extra=st.integers(0, 15), data=st.data())
def test_random_address_edits_between_runs_never_cost_a_member_its_place(
        world: World, extra: int, data: st.DataObject) -> None:
    """Oracle: the leavers' addresses are off the list, and every other contact that was on it
    (edited or not) is still there, with the newcomers: the list is exactly what it was, less
    the leavers, plus the segment's newcomers."""
    n = next(_examples)
    listed = world.control.seed(lists=[f"Edits {n}"]).lists[f"Edits {n}"]
    here = dataclasses.replace(world, list_id=listed)
    size = 42 + extra  # 41 leave first: more than are looked up one by one, so ids are kept

    def person(i: int, country: str, email: str | None = None) -> dict[str, object]:
        return {"customer_id": n * 1000 + i, "email": email or f"e{n}-{i}@example.com",
                "first_name": "E", "last_name": str(i), "country": country}

    home = f"E{n}"
    here.load_profiles([person(i, home) for i in range(size)])
    export = here.export(f"edits {n}", [here.segment(f"edits {n}", f"country = '{home}'")],
                         mode="mirror")
    assert here.run(export).status == "succeeded"
    here.load_profiles([person(i, "gone" if i < 41 else home) for i in range(size)])
    refresh(here)
    learnt = here.run(export)
    assert learnt.status == "succeeded", learnt.message
    staying = list(range(41, size))

    # Between the runs, people edit some of the remaining contacts in Constant Contact.
    edited = data.draw(st.lists(st.sampled_from(staying), unique=True, max_size=len(staying)),
                       label="edited")
    newcomers: dict[int, str] = {}
    for i in edited:
        how = data.draw(EDITS, label=f"edit of {i}")
        contact_id = _contact_id(here, f"e{n}-{i}@example.com")
        if how == "unrelated":
            _edit(here, contact_id, f"x{n}-{i}@elsewhere.test")
        elif how == "newcomer":
            newcomers[i] = f"new{n}-{i}@example.com"
            _edit(here, contact_id, newcomers[i])
        else:
            _edit(here, contact_id, f"tmp{n}-{i}@elsewhere.test")
            _edit(here, contact_id, f"e{n}-{i}@example.com")
    leaving = set(data.draw(st.lists(st.sampled_from(staying), unique=True, min_size=1,
                                     max_size=len(staying)), label="leaving"))
    before = here.members()
    here.load_profiles([
        *(person(i, "gone" if i < 41 or i in leaving else home) for i in range(size)),
        *(person(500 + i, home, email) for i, email in newcomers.items())])
    refresh(here)

    done = here.run(export)

    assert done.status == "succeeded", done.message
    gone = {f"e{n}-{i}@example.com" for i in leaving}
    assert here.members() == (before - gone) | set(newcomers.values())
    assert_removal_counts(done, len(leaving))


def test_a_fold_is_as_old_as_its_oldest_ids_and_drops_those_without_learnt_at(
        world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    with world.engine.begin() as conn:  # the blocks learnt so far: kept before 0012
        blocks = conn.execute(update(ExportContactIds).values(learnt_at=None)).rowcount
    assert 1 <= blocks < MAX_ID_BLOCKS
    now = utcnow()
    learnt = {f"m{150 + i}@example.com": now - timedelta(hours=i + 1)
              for i in range(MAX_ID_BLOCKS + 1 - blocks)}
    for email, moment in learnt.items():  # one block each: the last one folds them
        learn_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                          keys=np.array([key_of(email)]),
                          ids=pa.array([_contact_id(world, email)]), learnt_at=moment)
    with world.sessions() as session:
        rows = session.execute(select(ExportContactIds.members,
                                      ExportContactIds.learnt_at)).all()
    oldest = min(learnt.values())
    assert [(m, at.timestamp()) for m, at in rows] == [(len(learnt), oldest.timestamp())]
    keys = np.array([key_of(e) for e in [*learnt, "m140@example.com"]])
    kept = kept_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                            keys=keys)
    # m140's id was only in the blocks without a learnt_at: gone with the fold.
    assert {k: (v.contact_id, v.learnt_at.timestamp()) for k, v in kept.items()} == {
        key_of(e): (_contact_id(world, e), oldest.timestamp()) for e in learnt}
