"""Import bodies: exact bytes, both limits kept, order and membership accounted for."""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_export.constant_contact.batching import (
    HARD_MAX_BYTES,
    MAX_CONTACTS_PER_IMPORT,
    iter_import_bodies,
)
from segment_export.errors import ConfigurationError, DataError

LISTS = ["0d6a0c5e-1111-4a2b-9c3d-4e5f60718293"]


def _contacts(n: int) -> list[dict[str, Any]]:
    return [
        {"email": f"p{i}@example.com", "first_name": "Ann", "last_name": f"L{i}"} for i in range(n)
    ]


def test_body_is_the_contract_shape_and_exact_bytes() -> None:
    (batch,) = list(iter_import_bodies(_contacts(3), list_ids=LISTS))
    decoded = orjson.loads(batch.body)
    assert decoded == {"list_ids": LISTS, "import_data": _contacts(3)}
    assert batch.nbytes == len(batch.body)
    assert (batch.count, batch.start, batch.stop) == (3, 0, 3)
    assert batch.emails == ["p0@example.com", "p1@example.com", "p2@example.com"]


def test_cuts_at_max_contacts_and_keeps_order() -> None:
    batches = list(iter_import_bodies(_contacts(10), list_ids=LISTS, max_contacts=4))
    assert [b.count for b in batches] == [4, 4, 2]
    assert [b.start for b in batches] == [0, 4, 8]
    emails = [e for b in batches for e in b.emails]
    assert emails == [c["email"] for c in _contacts(10)]


def test_cuts_at_max_bytes_exactly_at_the_limit() -> None:
    contacts = _contacts(50)
    one = next(iter(iter_import_bodies(contacts[:1], list_ids=LISTS))).nbytes
    two = next(iter(iter_import_bodies(contacts[:2], list_ids=LISTS))).nbytes
    # A limit of exactly two contacts' body must hold two, and one byte less only one.
    assert [b.count for b in iter_import_bodies(contacts[:3], list_ids=LISTS, max_bytes=two)] == [
        2,
        1,
    ]
    assert [
        b.count for b in iter_import_bodies(contacts[:3], list_ids=LISTS, max_bytes=two - 1)
    ] == [1, 1, 1]
    assert one < two


def test_a_contact_too_big_alone_is_a_data_error_after_the_ones_before() -> None:
    contacts = [*_contacts(3), {"email": "big@example.com", "cf:notes": "x" * 5000}, *_contacts(2)]
    emitted = []
    batches = iter_import_bodies(contacts, list_ids=LISTS, max_bytes=2000)
    emitted.append(next(batches))
    with pytest.raises(DataError) as info:
        next(batches)
    assert info.value.context["index"] == 3
    assert info.value.context["email"] == "big@example.com"
    assert sum(b.count for b in emitted) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"list_ids": []}, "list ids"),
        ({"list_ids": [f"l{i}" for i in range(51)]}, "list ids"),
        ({"list_ids": LISTS, "max_contacts": MAX_CONTACTS_PER_IMPORT + 1}, "max_contacts"),
        ({"list_ids": LISTS, "max_bytes": HARD_MAX_BYTES}, "max_bytes"),
        ({"list_ids": LISTS, "max_bytes": 10}, "too small"),
    ],
)
def test_refuses_limits_beyond_constant_contacts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        list(iter_import_bodies(_contacts(1), **kwargs))


def test_empty_input_gives_no_batch() -> None:
    assert list(iter_import_bodies([], list_ids=LISTS)) == []


def test_default_limits_hold_with_real_sized_batches() -> None:
    # 40,000 small contacts fit in bytes, so the count limit is the one that cuts.
    batches = list(iter_import_bodies(_contacts(90_000), list_ids=LISTS))
    assert [b.count for b in batches] == [40_000, 40_000, 10_000]
    # Long values: now the byte limit cuts, well before 40,000.
    wide = [{"email": f"p{i}@example.com", "cf:bio": "é" * 120} for i in range(60_000)]
    sizes = [(b.count, b.nbytes) for b in iter_import_bodies(wide, list_ids=LISTS)]
    assert all(n < HARD_MAX_BYTES and n <= 3_900_000 for _, n in sizes)
    assert sum(c for c, _ in sizes) == 60_000
    assert sizes[0][0] < 40_000


def test_a_million_contacts_serialize_in_seconds() -> None:
    contacts = _contacts(1_000_000)
    started = time.perf_counter()
    total = sum(b.count for b in iter_import_bodies(contacts, list_ids=LISTS))
    elapsed = time.perf_counter() - started
    assert total == 1_000_000
    # ~1.4 s alone on the 2-core reference machine. The bound is loose so that a busy host does
    # not fail it; what it guards against is a quadratic batcher (re-serializing the body per
    # contact), which takes minutes.
    assert elapsed < 15.0, elapsed


# Values as long as validation allows (50 for names, 255 for custom fields), in any script,
# including 4-byte characters, quotes, backslashes and control characters that JSON escapes.
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=255)
_contact = st.fixed_dictionaries(
    {"email": st.text(max_size=50)},
    optional={
        "first_name": st.text(max_size=50),
        "last_name": st.text(max_size=50),
        "cf:notes": _text,
        "cf:more": _text,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contacts=st.lists(_contact, max_size=300),
    max_contacts=st.integers(1, 120),
    max_bytes=st.integers(3_000, 40_000),
    list_count=st.integers(1, 50),
)
def test_no_body_can_exceed_either_limit(
    contacts: list[dict[str, Any]], max_contacts: int, max_bytes: int, list_count: int
) -> None:
    list_ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(list_count)]
    batches = list(
        iter_import_bodies(
            contacts, list_ids=list_ids, max_contacts=max_contacts, max_bytes=max_bytes
        )
    )
    seen: list[dict[str, Any]] = []
    for batch in batches:
        assert len(batch.body) == batch.nbytes <= max_bytes
        assert 1 <= batch.count <= max_contacts
        decoded = orjson.loads(batch.body)
        assert decoded["list_ids"] == list_ids
        assert len(decoded["import_data"]) == batch.count
        assert batch.emails == [c["email"] for c in decoded["import_data"]]
        assert batch.start == len(seen)
        seen.extend(decoded["import_data"])
    assert seen == contacts  # nothing lost, nothing duplicated, order kept
    # Greedy packing: each batch was cut only when the next contact would not fit.
    for batch, following in itertools.pairwise(batches):
        nxt = orjson.dumps(contacts[following.start])
        assert batch.count == max_contacts or batch.nbytes + 1 + len(nxt) > max_bytes
