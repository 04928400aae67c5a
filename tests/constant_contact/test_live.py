"""Read-only calls against a real Constant Contact account, when credentials are given.

Set SEGMENT_EXPORT_TEST_LIVE_CC_ACCESS_TOKEN (or SEGMENT_EXPORT_LIVE_CC_ACCESS_TOKEN) to a valid
access token with account_read and contact_data; nothing is written to the account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice

import pytest

from segment_export.constant_contact import (
    ConstantContactClient,
    InProcessRateLimiter,
    StaticTokenProvider,
)

pytestmark = pytest.mark.live

# The conftest clears SEGMENT_EXPORT_* variables (except ..._TEST_*) for every test, so the
# token is read once at import time, before that happens.
_TOKEN = os.environ.get("SEGMENT_EXPORT_TEST_LIVE_CC_ACCESS_TOKEN") or os.environ.get(
    "SEGMENT_EXPORT_LIVE_CC_ACCESS_TOKEN"
)
_API_URL = os.environ.get("SEGMENT_EXPORT_TEST_LIVE_CC_API_URL", "https://api.cc.email/v3")


@pytest.fixture
def live_client() -> Iterator[ConstantContactClient]:
    if not _TOKEN:
        pytest.skip("no live Constant Contact credentials (SEGMENT_EXPORT_LIVE_CC_ACCESS_TOKEN)")
    # A real key's budget is 4 requests/s and 10,000/day; these tests use a handful.
    with ConstantContactClient(
        api_url=_API_URL,
        auth=StaticTokenProvider(_TOKEN),
        limiter=InProcessRateLimiter(rate=2.0, daily_quota=50),
        max_retries=3,
    ) as client:
        yield client


def test_account_summary(live_client: ConstantContactClient) -> None:
    summary = live_client.account_summary()
    assert summary.encoded_account_id


def test_lists_parse(live_client: ConstantContactClient) -> None:
    lists = live_client.list_contact_lists(include_membership_count="all", limit=50)
    for contact_list in lists:
        assert len(contact_list.list_id) == 36
        assert contact_list.membership_count is not None
    if lists:
        again = live_client.get_contact_list(lists[0].list_id)
        assert again.name == lists[0].name


def test_activities_parse(live_client: ConstantContactClient) -> None:
    for activity in islice(live_client.list_activities(limit=5), 5):  # one page, not all
        assert activity.state in {
            "initialized",
            "processing",
            "completed",
            "cancelled",
            "failed",
            "timed_out",
        }
