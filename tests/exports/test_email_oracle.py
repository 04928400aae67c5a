"""The email check against an independent oracle: nothing we send may be refused by
email-validator (deliverability off, SMTPUTF8 off), and every refusal names the rule it broke."""

from __future__ import annotations

import pyarrow as pa
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segment_export.exports.validate import EMAIL_MAX_LENGTH, validate_members

MAPPING = {"email": "email"}

# Pieces that sit on the edges of the rule: dots, brackets, quoting, non-ASCII letters,
# invisible characters, hyphens and digits in domain labels.
_LOCAL_PIECES = st.sampled_from([
    "a", "Z", "0", "_", "+", "-", "'", ".", "..", "{", "}", "[", "]", "(", ")", "<", ">",
    '"', "\\", ",", ";", ":", "!", "#", "$", "%", "&", "*", "/", "=", "?", "^", "`", "|", "~",
    " ", "\t", "\u00f6", "\u00e9", "\u212a", "\u0130", "\u200b", "\u00ad", "\ufeff", "\u2060",
    "\u00a0", "\x00", "\x7f", "@",
])
_DOMAIN_PIECES = st.sampled_from([
    "a", "b", "z", "0", "9", "-", "--", ".", "..", "xn--", "\u00f6", "\u200b", "_", "[", "]",
    "1", "example", "com", "co", "uk", "x" * 63, "y" * 64,
])
_TLDS = st.sampled_from(["com", "org", "io", "uk", "c", "c0m", "123", "xn--p1ai", "test",
                         "local", "invalid", "museum", ""])


@st.composite
def edge_addresses(draw: st.DrawFn) -> str:
    local = "".join(draw(st.lists(_LOCAL_PIECES, min_size=0, max_size=6)))
    labels = "".join(draw(st.lists(_DOMAIN_PIECES, min_size=0, max_size=4)))
    tld = draw(_TLDS)
    domain = f"{labels}.{tld}" if draw(st.booleans()) else labels + tld
    if draw(st.integers(0, 9)) == 0:
        domain = draw(st.sampled_from(["[192.0.2.1]", "[IPv6:2001:db8::1]", "localhost"]))
    pad = draw(st.sampled_from(["", " ", "\t", "\n", "\u00a0", "\u200b"]))
    return pad + local + "@" + domain + pad


def _ours(addresses: list[str]) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """What our check sends (raw -> normalised) and refuses (raw -> reason, detail)."""
    members = pa.table({"customer_id": pa.array(range(1, len(addresses) + 1)),
                        "email": pa.array(addresses, pa.string())})
    result = validate_members(members, id_column="customer_id", mapping=MAPPING)
    by_id = dict(enumerate(addresses, start=1))
    sent = {by_id[int(i)]: e for i, e in zip(result.contacts.column("customer_id").to_pylist(),
                                             result.contacts.column("email").to_pylist(),
                                             strict=True)}
    refused = {row["email"]: (row["reason"], row["detail"])
               for row in result.rejected.to_pylist()}
    return sent, refused


def _oracle_accepts(address: str) -> str | None:
    """email-validator's normalised ASCII form, or None when it refuses the address."""
    try:
        checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return checked.normalized


def _check_against_oracle(address: str) -> None:
    sent, refused = _ours([address])
    if address in sent:
        oracle = _oracle_accepts(address.strip(" \t\n\f\r"))
        assert oracle is not None, f"we send {address!r}, which email-validator refuses"
        assert sent[address] == oracle.lower()
    else:
        reason, detail = refused[address]
        assert reason in {"invalid_email", "email_too_long", "missing_email"}
        assert detail, f"no detail for refused {address!r}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_addresses())
@example("first.last+tag@sub.example.co.uk")
@example("a..b@example.com")
@example("{a}@example.com")
@example("a@[192.0.2.1]")
def test_every_address_we_accept_the_oracle_accepts(address: str) -> None:
    _check_against_oracle(address)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.emails())
def test_rfc_addresses_we_accept_the_oracle_accepts(address: str) -> None:
    _check_against_oracle(address)


ORDINARY = [
    "first.last@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.ie",
    "user_name-1@mail-server.example.org", "  Mixed.Case@Example.COM  ", "x@ex.io",
]


def test_ordinary_addresses_are_sent_normalised() -> None:
    sent, refused = _ours(ORDINARY)
    assert refused == {}
    assert sent["  Mixed.Case@Example.COM  "] == "mixed.case@example.com"
    for address in ORDINARY:
        assert _oracle_accepts(address.strip()) is not None


@pytest.mark.parametrize(("address", "detail"), [
    (".a@example.com", "local part starts with a dot"),
    ("a.@example.com", "local part ends with a dot"),
    ("a..b@example.com", "local part has two dots in a row"),
    ("{a}@example.com", "character '{' not allowed in the local part"),
    ("a[b]@example.com", "character '[' not allowed in the local part"),
    ("j\u00f6rg@example.com", "non-ASCII character U+00F6 (LATIN SMALL LETTER O WITH DIAERESIS)"),
    ("a\u200b@example.com", "non-ASCII character U+200B (ZERO WIDTH SPACE)"),
    ("a\u00adb@example.com", "non-ASCII character U+00AD (SOFT HYPHEN)"),
    ("\ufeffa@example.com", "non-ASCII character U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ("a b@example.com", "space in address"),
    ("a@@example.com", "more than one @ in address"),
    ("a@example", "domain has no dot (not a full domain)"),
    ("a@-x.example.com", "domain label starts or ends with a hyphen"),
    ("a@example.c0m", "top-level domain is not letters only"),
    ("a@[192.0.2.1]", "IP address literal as domain is not accepted"),
    ('"a b"@example.com', "space in address"),
    ("a@example.test", "special-use domain .test cannot receive mail"),
])
def test_each_refusal_names_the_rule_it_broke(address: str, detail: str) -> None:
    sent, refused = _ours([address])
    assert address not in sent
    reason, found = refused[address]
    assert reason == "invalid_email"
    assert found.startswith(detail), found


def test_an_over_long_address_keeps_its_own_reason() -> None:
    address = "a" * (EMAIL_MAX_LENGTH - len("@example.com") + 1) + "@example.com"
    _, refused = _ours([address])
    assert refused[address][0] == "email_too_long"
