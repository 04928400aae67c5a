"""Row rules and the salvage of a cut body, without HTTP."""

from __future__ import annotations

import orjson
import pytest

from segment_export.emulator.imports import plan_import, salvage_object


def test_salvage_keeps_whole_values_only() -> None:
    body = orjson.dumps({"list_ids": ["a", "b"], "import_data": [
        {"email": "one@example.com"}, {"email": "two@example.com"}, {"email": "three@x.io"}]})
    cut = body.index(b"three") + 3
    assert salvage_object(body[:cut]) == {
        "list_ids": ["a", "b"],
        "import_data": [{"email": "one@example.com"}, {"email": "two@example.com"}],
    }
    assert salvage_object(body) == orjson.loads(body)
    assert salvage_object(body[:5]) == {}
    assert salvage_object(b"") == {}


def test_salvage_survives_a_cut_inside_a_multibyte_character() -> None:
    body = orjson.dumps({"list_ids": ["a"], "import_data": [
        {"email": "a@example.com", "first_name": "Zoë"}, {"email": "b@example.com",
                                                          "first_name": "Łukasz"}]})
    cut = body.index("Ł".encode()) + 1
    assert salvage_object(body[:cut])["import_data"] == [
        {"email": "a@example.com", "first_name": "Zoë"}]


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.ie", "X_Y@EXAMPLE.COM"],
)
def test_valid_addresses(address: str) -> None:
    assert plan_import([{"email": address}], custom_fields={}).rows


@pytest.mark.parametrize("rule", ["lenient", "strict"])
@pytest.mark.parametrize(
    "address",
    ["plain", "a@b", "a b@example.com", "a,b@example.com", "a@example", "<a@example.com>",
     "a@example.c", "a@@example.com", "a@b@example.com", "a(b)@example.com", "a[b]@example.com",
     "a{b}@example.com", "a@example..com", "a@.example.com", "a@example.com."],
)
def test_invalid_addresses(address: str, rule: str) -> None:
    plan = plan_import([{"email": address}], custom_fields={}, email_rule=rule)
    assert plan.rows == {}
    assert plan.correctable_count == 1


@pytest.mark.parametrize(
    "address",
    [".a@example.com", "a..b@example.com", "a.@example.com", "a@-example.com",
     "a@example.123", "zoë@example.com", "a@exämple.de", "a\"b@example.com", "a@example_x.com"],
)
def test_lenient_takes_what_support_describes_and_strict_refuses(address: str) -> None:
    # Support: no spaces, commas or brackets; one @; a full domain. Nothing about dots,
    # quotes or non-ASCII: lenient takes them, strict (a plain ASCII dot-atom) does not.
    assert plan_import([{"email": address}], custom_fields={}).rows
    assert plan_import([{"email": address}], custom_fields={}, email_rule="strict").rows == {}


def test_leading_and_trailing_spaces_are_trimmed() -> None:
    plan = plan_import([{"email": "  Pad@Example.com "}], custom_fields={})
    assert plan.rows["pad@example.com"]["email"] == "Pad@Example.com"


def test_error_messages_are_capped() -> None:
    plan = plan_import([{"email": "bad"}] * 1_500, custom_fields={})
    assert plan.correctable_count == 1_500
    assert len(plan.rejections) == 1_000
    # What the activity says is one free-text line, whatever the number of rows.
    assert plan.activity_errors() == [
        "1500 contact(s) were not imported because of correctable errors (an invalid email "
        "address or SMS number, a birthday or anniversary format error, or no email address or "
        "SMS number); correct them in Constant Contact."]
