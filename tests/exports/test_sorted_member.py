"""``sorted_member`` (the leavers' set test) answers exactly as ``np.isin``."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from segment_export.exports.diff import Delivered, leavers, sorted_member

keys = st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 5), max_size=60)


@given(keys, keys)
def test_sorted_member_is_isin(values: list[int], members: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    sorted_keys = np.sort(np.array(members, dtype=np.int64))
    assert sorted_member(array, sorted_keys).tolist() == np.isin(array, sorted_keys).tolist()


@given(keys, keys)
def test_leavers_are_the_delivered_keys_not_current(delivered: list[int],
                                                    current: list[int]) -> None:
    state = Delivered(np.unique(np.array(delivered, dtype=np.int64)),
                      np.zeros(len(set(delivered)), dtype=np.int64))
    gone = leavers(state, np.sort(np.array(current, dtype=np.int64)))
    assert sorted(gone.tolist()) == sorted(set(delivered) - set(current))
