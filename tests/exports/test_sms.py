"""SMS numbers: parsed to E.164, US only, consent explicit or not_set, SMS-only members where the
connection allows them; against the emulator over HTTP, with libphonenumber as the oracle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from segment_export.config import Settings
from segment_export.db.models import Connection, RejectedRow
from segment_export.definitions.connections import ConnectionChanges, update_connection
from segment_export.exports.validate import SmsRules, validate_members
from segment_export.segments.refresh import refresh_segments
from tests.world import World, open_world


@pytest.fixture
def any_world(settings: Settings, engine: Engine) -> Iterator[World]:
    """The world on SQLite and on PostgreSQL."""
    with open_world(settings, engine) as opened:
        yield opened


MAPPING = {"email": "email", "first_name": "first_name", "sms_number": "mobile",
           "sms_consent": "texts_ok", "sms_consent_date": "texts_ok_on"}


def _person(i: int, *, email: str | None, mobile: str | None, consent: bool = False,
            on: str | None = None, country: str = "US") -> dict[str, Any]:
    return {"customer_id": i, "email": email, "first_name": f"P{i}", "mobile": mobile,
            "texts_ok": consent, "texts_ok_on": on, "country": country}


def _people() -> list[dict[str, Any]]:
    return [
        # email and a consented number: one contact, explicit SMS permission
        _person(1, email="ann@example.com", mobile="(201) 555-0101", consent=True,
                on="2026-11-01"),
        # email and a number without consent: the number goes as not_set
        _person(2, email="bob@example.com", mobile="201-555-0102"),
        # email and a foreign number: sent by email, the number left out with a reason
        _person(3, email="cat@example.com", mobile="+44 20 7946 0958", consent=True,
                on="2026-11-01"),
        # SMS-only, consented: sent only where the connection allows SMS-only contacts
        _person(4, email=None, mobile="+1 202 555 0104", consent=True, on="2026-10-30"),
        # SMS-only without consent: nothing could ever reach them
        _person(5, email="", mobile="202.555.0105"),
        # SMS-only with numbers that are not sendable
        _person(6, email=None, mobile="12345", consent=True, on="2026-11-01"),
        _person(7, email=None, mobile="+1 416 555 0199", consent=True, on="2026-11-01"),
        # neither an email nor a number: refused as before
        _person(8, email=None, mobile=None),
    ]


def _set_sms_only(world: World, allowed: bool) -> None:
    with world.sessions.begin() as session:
        connection = session.get(Connection, world.connection.id)
        assert connection is not None
        update_connection(session, actor=world.admin, connection=connection,
                          changes=ConnectionChanges(sms_only_allowed=allowed))


def _reasons(world: World, run_id: str) -> dict[str, str]:
    with world.sessions() as session:
        rows = session.scalars(select(RejectedRow).where(RejectedRow.run_id == run_id)).all()
    return {str(r.customer_id): r.reason for r in rows}


def _api_contacts(world: World) -> dict[str, dict[str, Any]]:
    """The list's contacts as Constant Contact's own API shows them (GET /v3/contacts/{id},
    with its sms_channel), keyed by email or, for SMS-only contacts, their 10 digits."""
    with world.sessions() as session:
        connection = session.get(Connection, world.connection.id)
        assert connection is not None
        token = connection.access_token
    headers = {"Authorization": f"Bearer {token}"}
    found: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=world.emulator.api_url.rstrip("/") + "/", headers=headers) as http:
        listed = http.get("contacts", params={"lists": world.list_id, "limit": 500})
        listed.raise_for_status()
        for item in listed.json()["contacts"]:
            contact = http.get(f"contacts/{item['contact_id']}").json()
            email = (contact.get("email_address") or {}).get("address")
            sms = contact.get("sms_channel")
            found[email or sms["sms_address"]] = contact
    return found


def _permission(contact: dict[str, Any]) -> str | None:
    sms = contact.get("sms_channel")
    return sms["sms_channel_consents"][0]["sms_consent_permission"] if sms else None


def _adds_up(counts: dict[str, Any]) -> None:
    assert counts["in_segment"] == (counts["sent"] + counts["unchanged"]
                                    + counts["rejected_locally"] + counts["no_consent"]
                                    + counts["suppressed"]), counts
    # Every refused number is a report row; those of members sent by email are not refusals.
    assert counts["sms_refused"] >= counts["sms_phone_dropped"]
    assert counts["sms_refused"] - counts["sms_phone_dropped"] <= counts["rejected_locally"]
    assert counts["sms_only_sent"] <= counts["sms_only"] <= counts["valid"]


def test_sms_only_members_follow_the_connection_setting_and_consent_reaches_the_list(
        any_world: World) -> None:
    world = any_world
    world.load_profiles(_people())
    export = world.export("SMS", [world.segment("US", "country = 'US'")], mapping=MAPPING)
    since = world.control.requests()[-1].seq

    first = world.run(export)
    assert first.status == "succeeded_with_rejections", first.message
    c = first.counts
    _adds_up(c)
    assert (c["sent"], c["sms_only"], c["sms_only_sent"]) == (3, 0, 0)
    # 3's foreign number, 4 not allowed, 5 without consent, 6 invalid, 7 Canadian
    assert (c["sms_refused"], c["sms_phone_dropped"]) == (5, 1)
    assert c["rejected_locally"] == 5  # 4, 5, 6, 7 and 8 (no email, no number)
    assert _reasons(world, first.id) == {
        "3": "phone_not_us", "4": "sms_not_allowed", "5": "no_sms_consent",
        "6": "invalid_phone", "7": "phone_not_us", "8": "missing_email"}
    imports = [r for r in world.control.requests(since) if r.path.endswith("json_import")]
    assert len(imports) == 2, "explicit and not_set contacts go in bodies of their own"

    contacts = _api_contacts(world)
    assert set(contacts) == {"ann@example.com", "bob@example.com", "cat@example.com"}
    assert contacts["ann@example.com"]["sms_channel"]["sms_address"] == "2015550101"
    assert _permission(contacts["ann@example.com"]) == "explicit"
    assert _permission(contacts["bob@example.com"]) == "not_set"
    assert "sms_channel" not in contacts["cat@example.com"]
    snapshot = {c["email"]: c for c in world.control.contacts()}
    assert snapshot["ann@example.com"]["sms_consent_date"] == "2026-11-01"

    # The account takes SMS-only contacts: the consented one is sent, keyed by its number.
    _set_sms_only(world, True)
    second = world.run(export)
    c = second.counts
    _adds_up(c)
    assert (c["sent"], c["sms_only"], c["sms_only_sent"]) == (1, 1, 1), second.message
    assert "sms_not_allowed" not in _reasons(world, second.id).values()
    contacts = _api_contacts(world)
    assert "email_address" not in contacts["2025550104"]
    assert _permission(contacts["2025550104"]) == "explicit"
    assert world.list_id in world.control.contacts()[-1]["list_ids"]

    # Nothing changed: the delivered state knows the sms: key, so nothing is sent again.
    since = world.control.requests()[-1].seq
    third = world.run(export)
    assert (third.counts["sent"], third.counts["sms_only_sent"]) == (0, 0), third.message
    assert third.counts["unchanged"] == 4
    assert not [r for r in world.control.requests(since) if r.path.endswith("json_import")]


def test_mirror_removes_an_sms_only_leaver_and_keeps_the_rest(world: World) -> None:
    _set_sms_only(world, True)
    rows = [_person(1, email="ann@example.com", mobile="2015550101", consent=True,
                    on="2026-11-01"),
            _person(2, email=None, mobile="2025550102", consent=True, on="2026-11-01"),
            _person(3, email=None, mobile="2025550103", consent=True, on="2026-11-01")]
    world.load_profiles(rows)
    export = world.export("SMS mirror", [world.segment("US", "country = 'US'")],
                          mapping=MAPPING, mode="mirror")
    first = world.run(export)
    assert first.counts["sms_only_sent"] == 2, first.message
    assert set(_api_contacts(world)) == {"ann@example.com", "2025550102", "2025550103"}

    rows[1]["country"] = "CA"  # 2 leaves the segment
    world.load_profiles(rows)
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()
    since = world.control.requests()[-1].seq
    second = world.run(export)
    assert second.status == "succeeded", second.message
    assert (second.counts["left_segment"], second.counts["removed"]) == (1, 1)
    assert set(_api_contacts(world)) == {"ann@example.com", "2025550103"}
    exports = [r for r in world.control.requests(since)
               if r.path.endswith("contact_exports")]
    assert len(exports) == 1, "an SMS-only leaver is found by number in the list's export"
    # The contact is only off the list, not deleted.
    snapshot = {c.get("sms_number"): c for c in world.control.contacts()}
    assert not snapshot["2025550102"]["deleted"]
    third = world.run(export)
    # The leaver is no longer the export's: nothing sent, nothing removed again.
    assert (third.counts["sent"], third.counts.get("removed", 0)) == (0, 0), third.message


def test_a_dry_run_counts_sms_only_members_too(world: World) -> None:
    world.load_profiles(_people())
    export = world.export("SMS dry", [world.segment("US", "country = 'US'")], mapping=MAPPING)
    _set_sms_only(world, True)
    dry = world.run(export, dry_run=True)
    assert dry.counts["would_add"] == 4, dry.message
    assert dry.counts["sms_only"] == 1
    assert world.control.contacts() == []


# -- every number, classified as libphonenumber classifies it ----------------------------------

_DIGITS = st.text(alphabet="0123456789", min_size=3, max_size=12)
_NUMBERS = st.one_of(
    _DIGITS,
    st.builds(lambda d: "+" + d, _DIGITS),
    st.builds(lambda a, b, c: f"({a}) {b}-{c}", st.text("0123456789", min_size=3, max_size=3),
              st.text("0123456789", min_size=3, max_size=3),
              st.text("0123456789", min_size=4, max_size=4)),
    st.sampled_from(["+44 20 7946 0958", "+1 416 555 0199", "+1 787 555 0100", "+61 2 9374 4000",
                     "201-555-0123", "+1 (202) 555-0188", "2025550123 ext. 7", "not a number",
                     "+1 800 555 0199", "555-0123"]),
)


def _oracle(raw: str, region: str) -> tuple[str | None, str | None]:
    """What libphonenumber says of a number: (10 US digits or None, reason or None)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None, "invalid_phone"
    if not phonenumbers.is_valid_number(number) or number.extension:
        return None, "invalid_phone"
    if phonenumbers.region_code_for_number(number) != "US":
        return None, "phone_not_us"
    return str(number.national_number), None


@examples(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numbers=st.lists(_NUMBERS, min_size=1, max_size=8),
       region=st.sampled_from(["US", "CA", "GB"]))
def test_each_number_is_sent_or_refused_as_libphonenumber_reads_it(numbers: list[str],
                                                                   region: str) -> None:
    rows = pa.table({
        "customer_id": list(range(2 * len(numbers))),
        # every number twice: once with an email (left out if bad), once alone (refused if bad)
        "email": [f"p{i}@example.com" for i in range(len(numbers))] + [None] * len(numbers),
        "mobile": numbers + numbers,
        "texts_ok": [True] * (2 * len(numbers)),
        "texts_ok_on": ["2026-11-01"] * (2 * len(numbers)),
    })
    mapping = {"email": "email", "sms_number": "mobile", "sms_consent": "texts_ok",
               "sms_consent_date": "texts_ok_on"}
    found = validate_members(rows, id_column="customer_id", mapping=mapping,
                             sms=SmsRules(region=region, sms_only_allowed=True))
    sent = {r["customer_id"]: r for r in found.contacts.to_pylist()}
    reasons = {r["customer_id"]: r["reason"] for r in found.rejected.to_pylist()}
    expected_keys: dict[str, str] = {}
    for i, raw in enumerate(numbers):
        digits, reason = _oracle(raw, region)
        with_email, alone = str(i), str(i + len(numbers))
        assert with_email in sent, "a bad number never costs the email delivery"
        assert sent[with_email]["sms_number"] == digits
        assert reasons.get(with_email) == reason
        if reason is not None:
            assert reasons[alone] == reason
            continue
        key = f"sms:+1{digits}"
        # the same number twice among the SMS-only: the higher customer id is sent
        if key in expected_keys:
            assert reasons[expected_keys[key]] == "superseded"
        expected_keys[key] = alone
    for key, customer_id in expected_keys.items():
        assert sent[customer_id]["email"] == key
        assert sent[customer_id]["sms_consent_date"] == "2026-11-01"
    assert found.sms_only == len(expected_keys)
    assert found.sms_refused == sum(1 for r in reasons.values() if r != "superseded")


@pytest.mark.parametrize(("consent", "on", "explicit"), [
    (True, "2026-11-01", True), (True, None, False), (False, "2026-11-01", False),
    ("yes", "2026-11-01T10:00:00", True), (True, "not a date", False)])
def test_explicit_only_with_consent_and_its_date(consent: Any, on: str | None,
                                                 explicit: bool) -> None:
    rows = pa.table({"customer_id": [1], "email": ["a@example.com"], "mobile": ["2015550101"],
                     "texts_ok": [str(consent)], "texts_ok_on": [on]})
    found = validate_members(rows, id_column="customer_id", mapping={
        "email": "email", "sms_number": "mobile", "sms_consent": "texts_ok",
        "sms_consent_date": "texts_ok_on"}, sms=SmsRules())
    (row,) = found.contacts.to_pylist()
    assert row["sms_number"] == "2015550101"
    assert (row["sms_consent_date"] is not None) == explicit
    if consent is True and not explicit:
        assert found.warnings["sms_consent_without_date_sent_not_set"] == 1


def test_sms_only_duplicates_across_chunks_send_the_highest_customer_id(world: World) -> None:
    """The first pass finds numbers SMS-only members share in different chunks, as the email
    plan does for emails: one contact per number, the highest customer id, the rest superseded."""
    from segment_export.exports.members import LocalCounts, stream_members

    world.load_profiles([
        _person(1, email=None, mobile="202-555-0111", consent=True, on="2026-11-01"),
        _person(2, email="x@example.com", mobile="202-555-0111"),  # has an email: its own key
        _person(3, email=None, mobile="+1 (202) 555-0112", consent=True, on="2026-11-01"),
        _person(4, email=None, mobile="(202) 555 0111", consent=True, on="2026-11-01"),
        _person(5, email=None, mobile="2025550112", consent=False),  # unsendable: no rival
        _person(6, email=None, mobile="2025550113", consent=True, on="2026-11-01")])
    export = world.export("SMS chunks", [world.segment("US", "country = 'US'")],
                          mapping=MAPPING)
    counts = LocalCounts()
    chunks = list(stream_members(world.store, export, seconds={}, counts=counts, chunk_rows=2,
                                 sms_only_allowed=True))
    assert len(chunks) == 3
    sent = {r["email"]: r["customer_id"] for c in chunks for r in c.contacts.to_pylist()}
    assert sent == {"sms:+12025550111": "4", "x@example.com": "2",
                    "sms:+12025550112": "3", "sms:+12025550113": "6"}
    reasons = {r["customer_id"]: r["reason"] for c in chunks for r in c.rejected.to_pylist()}
    assert reasons == {"1": "superseded", "5": "no_sms_consent"}
    assert (counts.sms_only, counts.sms_refused, counts.rejected_locally) == (3, 1, 2)


def test_the_sms_bodies_follow_the_official_contract() -> None:
    """What the run sends, checked against Constant Contact's own contract (ContactsJsonImport):
    an explicit and a not_set body, an SMS-only row without an email."""
    import numpy as np
    import orjson

    from segment_export.exports.bodies import SplitByConsent
    from tests.contract.contract import Contract

    rows = pa.table({"customer_id": [1, 2, 3], "email": ["a@example.com", "b@example.com", None],
                     "mobile": ["2015550101", "+1 202 555 0102", "2025550103"],
                     "texts_ok": [True, False, True],
                     "texts_ok_on": ["2026-11-01", None, "2026-10-30"]})
    found = validate_members(rows, id_column="customer_id", mapping={
        "email": "email", "sms_number": "mobile", "sms_consent": "texts_ok",
        "sms_consent_date": "texts_ok_on"}, sms=SmsRules(sms_only_allowed=True))
    cutter = SplitByConsent(list_ids=["0b8e4b28-6f33-11ee-b962-0242ac120002"])
    keys = np.arange(3, dtype=np.int64)
    ready = [*cutter.add(found.contacts, keys, keys), *cutter.finish()]
    bodies = [orjson.loads(batch.body) for batch, _ in ready]
    assert [(b["sms_permission_to_send"], b["import_data"]) for b in bodies] == [
        ("explicit", [{"email": "a@example.com", "sms_number": "2015550101",
                       "sms_consent_date": "2026-11-01"},
                      {"sms_number": "2025550103", "sms_consent_date": "2026-10-30"}]),
        ("not_set", [{"email": "b@example.com", "sms_number": "2025550102"}])]
    # The delivered state keeps the SMS-only contact's key, never a null email.
    assert [m.emails.to_pylist() for _, m in ready] == [
        ["a@example.com", "sms:+12025550103"], ["b@example.com"]]
    contract = Contract.load()
    found_op = contract.operation("POST", "/activities/contacts_json_import")
    assert found_op is not None
    (body_param,) = [p for p in found_op[1]["parameters"] if p["in"] == "body"]
    for body in bodies:
        assert contract.validate(body_param["schema"], body) == []
