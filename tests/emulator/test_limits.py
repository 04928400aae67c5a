"""Constant Contact's request limits: 4/s per API key, 10,000 per UTC day, scopes."""

from __future__ import annotations

import httpx

from segment_export.emulator import EmulatorServer
from tests.emulator.helpers import APP, FakeClock, api_client, tokens

THROTTLED = b'{"error_key":"throttled","error_message":"Too Many Requests"}'
QUOTA = b'{"error_key":"quota_exceeded","error_message":"Limit Exceeded"}'


def _statuses(client: httpx.Client, count: int) -> list[int]:
    return [client.get("/contact_lists").status_code for _ in range(count)]


def test_fifth_request_in_a_second_is_throttled(emu: EmulatorServer, clock: FakeClock) -> None:
    emu.control.set_config(requests_per_second=4)
    with api_client(emu, tokens(emu)["access_token"]) as api:
        assert _statuses(api, 4) == [200] * 4
        response = api.get("/contact_lists")
        assert response.status_code == 429
        assert response.content == THROTTLED
        assert "retry-after" not in response.headers
        clock.advance(0.999)
        assert api.get("/contact_lists").status_code == 429  # still inside (t-1s, t]
        clock.advance(0.001)
        assert _statuses(api, 4) == [200] * 4


def test_window_slides_rather_than_resetting_each_second(
    emu: EmulatorServer, clock: FakeClock
) -> None:
    emu.control.set_config(requests_per_second=4)
    with api_client(emu, tokens(emu)["access_token"]) as api:
        assert _statuses(api, 2) == [200, 200]
        clock.advance(0.6)
        assert _statuses(api, 2) == [200, 200]
        clock.advance(0.6)  # the first two left the window, the last two are still in it
        assert _statuses(api, 3) == [200, 200, 429]


def test_limits_count_per_api_key(emu: EmulatorServer) -> None:
    emu.control.set_config(requests_per_second=2)
    other = {**APP, "client_id": "other-app"}
    emu.control.seed(apps=[APP, other])
    with (
        api_client(emu, tokens(emu)["access_token"]) as first,
        api_client(emu, tokens(emu, client_id="other-app")["access_token"]) as second,
    ):
        assert _statuses(first, 3) == [200, 200, 429]
        assert _statuses(second, 2) == [200, 200]


def test_daily_quota_then_reset_at_utc_midnight(emu: EmulatorServer, clock: FakeClock) -> None:
    emu.control.set_config(daily_quota=3)
    with api_client(emu, tokens(emu)["access_token"]) as api:
        assert _statuses(api, 3) == [200] * 3
        clock.advance(5)
        response = api.get("/contact_lists")
        assert response.status_code == 429
        assert response.content == QUOTA
        assert "retry-after" not in response.headers
        # 1_800_000_000 is 2027-01-15T08:00:00Z; the next UTC day starts 16 h later.
        clock.advance(16 * 3600 - 5 - 1)
        assert api.get("/contact_lists").status_code == 429
        clock.advance(1)
        assert api.get("/contact_lists").status_code == 200
    assert emu.control.state()["usage_today"]["test-app"] == 1


def test_throttled_requests_do_not_count_toward_the_quota(
    emu: EmulatorServer, clock: FakeClock
) -> None:
    emu.control.set_config(requests_per_second=1, daily_quota=2)
    with api_client(emu, tokens(emu)["access_token"]) as api:
        assert _statuses(api, 3) == [200, 429, 429]
        clock.advance(1)
        assert api.get("/contact_lists").status_code == 200
        clock.advance(1)
        assert api.get("/contact_lists").content == QUOTA


def test_account_summary_needs_the_account_read_scope(emu: EmulatorServer) -> None:
    with api_client(emu, tokens(emu, scope="contact_data offline_access")["access_token"]) as api:
        response = api.get("/account/summary")
        assert response.status_code == 403
        assert response.json()[0]["error_key"] == "forbidden"
        assert api.get("/contact_lists").status_code == 200
    emu.control.set_config(enforce_scopes=False)
    with api_client(emu, tokens(emu, scope="contact_data")["access_token"]) as api:
        assert api.get("/account/summary").status_code == 200


def test_control_endpoints_are_never_limited_or_logged(emu: EmulatorServer) -> None:
    emu.control.set_config(requests_per_second=1, daily_quota=1)
    for _ in range(10):
        emu.control.state()
    assert emu.control.requests() == []
