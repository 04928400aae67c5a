"""The endpoint methods over fake transports on a frozen clock: shapes, paging, faults."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from segment_export.constant_contact.batching import iter_import_bodies
from segment_export.constant_contact.client import (
    ActivityTimeoutError,
    ActivityWaitCancelled,
    ConstantContactClient,
)
from segment_export.constant_contact.ratelimit import InProcessRateLimiter
from segment_export.constant_contact.tokens import InMemoryTokenStore, RefreshingTokenProvider
from segment_export.errors import (
    DataError,
    FatalError,
    NotFoundError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
    RetriableError,
)
from tests.constant_contact.fakes import (
    ACTIVITY_ID,
    LIST_ID,
    FakeClock,
    NoLimit,
    Recorder,
    activity,
    json_response,
    token,
)

API = "https://api.example.test/v3"
Handler = Callable[[httpx.Request], httpx.Response]


class FixedAuth:
    """A token provider that hands out numbered tokens and counts forced refreshes."""

    def __init__(self) -> None:
        self.current = "tok-1-abcdefgh"
        self.forced: list[str] = []

    def access_token(self) -> str:
        return self.current

    def force_refresh(self, stale: str) -> str:
        self.forced.append(stale)
        self.current = f"tok-{len(self.forced) + 1}-abcdefgh"
        return self.current


def _client(
    handler: Handler, clock: FakeClock | None = None, **kwargs: Any
) -> tuple[ConstantContactClient, Recorder, FakeClock]:
    clock = clock or FakeClock()
    recorder = Recorder(handler)
    kwargs.setdefault("auth", FixedAuth())
    kwargs.setdefault("limiter", NoLimit())
    client = ConstantContactClient(
        api_url=API,
        transport=recorder.transport(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        now=clock.now,
        **kwargs,
    )
    return client, recorder, clock


def _script(*answers: httpx.Response | Exception) -> Handler:
    pending: Iterator[httpx.Response | Exception] = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(pending)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


# -- shapes ----------------------------------------------------------------------------------


def test_account_summary_sends_bearer_and_parses() -> None:
    client, recorder, _ = _client(
        lambda r: json_response(
            200,
            {
                "encoded_account_id": "a07e1",
                "organization_name": "Acme",
                "contact_email": "o@acme.test",
                "something_new": 1,
            },
        )
    )
    summary = client.account_summary()
    assert summary.organization_name == "Acme"
    (request,) = recorder.requests
    assert request.url == f"{API}/account/summary"
    assert request.headers["Authorization"] == "Bearer tok-1-abcdefgh"
    assert request.headers["Accept"] == "application/json"


def test_import_sends_the_batchers_bytes_verbatim() -> None:
    client, recorder, _ = _client(lambda r: json_response(201, activity()))
    contacts = [{"email": "a@x.test", "first_name": "Zoë", "cf:tier": "gold"}]
    (batch,) = iter_import_bodies(contacts, list_ids=[LIST_ID])
    result = client.import_contacts(batch.body)
    assert result.activity_id == ACTIVITY_ID
    assert result.state == "initialized"
    (request,) = recorder.requests
    assert request.url == f"{API}/activities/contacts_json_import"
    assert request.content == batch.body  # the cf: key and the bytes measured are what is sent
    assert request.headers["Content-Type"] == "application/json"


def test_import_refuses_a_body_constant_contact_would_truncate() -> None:
    client, recorder, _ = _client(lambda r: json_response(201, activity()))
    with pytest.raises(DataError, match="truncated"):
        client.import_contacts(b"x" * 4_000_000)
    assert recorder.requests == []


@pytest.mark.parametrize("method", ["add_list_memberships", "remove_list_memberships"])
def test_membership_activities_are_raw_json_with_contact_ids(method: str) -> None:
    client, recorder, _ = _client(lambda r: json_response(201, activity()))
    ids = [f"c{i}" for i in range(500)]
    getattr(client, method)(ids, [LIST_ID])
    (request,) = recorder.requests
    assert request.url == f"{API}/activities/{method}"
    assert orjson.loads(request.content) == {"source": {"contact_ids": ids}, "list_ids": [LIST_ID]}
    with pytest.raises(DataError, match="500"):
        getattr(client, method)([*ids, "one-more"], [LIST_ID])
    with pytest.raises(DataError, match="list ids"):
        getattr(client, method)(ids[:1], [])
    assert len(recorder.requests) == 1


def test_lists_create_get_and_page() -> None:
    pages = {
        "/v3/contact_lists": {
            "lists": [{"list_id": "l1", "name": "One", "membership_count": 3}],
            "_links": {"next": {"href": "/v3/contact_lists?cursor=abc"}},
        },
        "/v3/contact_lists?cursor=abc": {"lists": [{"list_id": "l2", "name": "Two"}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return json_response(201, {"list_id": "l3", **orjson.loads(request.content)})
        if request.url.path == "/v3/contact_lists/l1":
            return json_response(200, {"list_id": "l1", "name": "One", "membership_count": 3})
        key = request.url.path + (
            f"?{request.url.query.decode()}" if request.url.params.get("cursor") else ""
        )
        return json_response(200, pages[key])

    client, recorder, _ = _client(handler)
    lists = client.list_contact_lists(include_membership_count="all")
    assert [(x.list_id, x.membership_count) for x in lists] == [("l1", 3), ("l2", None)]
    assert recorder.requests[0].url.params["include_membership_count"] == "all"
    assert client.get_contact_list("l1", include_membership_count="active").membership_count == 3
    created = client.create_contact_list("Three", description="from a segment")
    assert (created.list_id, created.name, created.description) == ("l3", "Three", "from a segment")


def test_find_contacts_follows_next_links_lazily() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        n = int(cursor) if cursor else 0
        contacts = [
            {
                "contact_id": f"id{n}-{i}",
                "email_address": {
                    "address": f"p{n}{i}@x.test",
                    "permission_to_send": "unsubscribed" if i else "implicit",
                },
            }
            for i in range(2)
        ]
        body: dict[str, Any] = {"contacts": contacts}
        if n < 2:
            body["_links"] = {"next": {"href": f"/v3/contacts?cursor={n + 1}"}}
        return json_response(200, body)

    client, recorder, _ = _client(handler)
    found = client.find_contacts(
        lists=[LIST_ID], status=["active", "unsubscribed"], include=["list_memberships"]
    )
    first = next(found)
    assert len(recorder.requests) == 1
    rest = list(found)
    assert [c.contact_id for c in [first, *rest]] == [
        f"id{n}-{i}" for n in range(3) for i in range(2)
    ]
    assert first.email == "p00@x.test"
    assert rest[0].email_address is not None
    assert rest[0].email_address.permission_to_send == "unsubscribed"
    params = recorder.requests[0].url.params
    assert (params["lists"], params["status"], params["include"], params["limit"]) == (
        LIST_ID,
        "active,unsubscribed",
        "list_memberships",
        "500",
    )
    # Later pages use the href as given (the cursor carries the filters).
    assert str(recorder.requests[1].url) == "https://api.example.test/v3/contacts?cursor=1"
    with pytest.raises(DataError):
        client.find_contacts(lists=[f"l{i}" for i in range(26)])


def test_export_and_download_follow_the_results_href() -> None:
    done = activity("completed", _links={"results": {"href": "/v3/contact_exports/f1"}})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/activities/contact_exports":
            return json_response(201, activity())
        if request.url.path == f"/v3/activities/{ACTIVITY_ID}":
            return json_response(200, done)
        assert request.headers["Accept"] == "text/csv"
        return httpx.Response(200, text="email_address,first_name\r\na@x.test,Ann\r\nb@x.test,\r\n")

    client, recorder, _ = _client(handler)
    started = client.create_contact_export(list_ids=[LIST_ID], fields=["email_address"])
    assert orjson.loads(recorder.requests[0].content) == {
        "list_ids": [LIST_ID],
        "fields": ["email_address"],
    }
    finished = client.wait_for_activity(started.activity_id)
    assert finished.results_href == "/v3/contact_exports/f1"
    rows = list(client.download_contact_export(finished.results_href))
    assert rows == [
        {"email_address": "a@x.test", "first_name": "Ann"},
        {"email_address": "b@x.test", "first_name": ""},
    ]
    assert recorder.requests[-1].url == "https://api.example.test/v3/contact_exports/f1"


def test_links_are_mapped_under_a_prefixed_api_url_and_never_off_host() -> None:
    recorder = Recorder(lambda r: json_response(200, {"activities": []}))
    client = ConstantContactClient(
        api_url="http://127.0.0.1:9/cc/v3",
        auth=FixedAuth(),
        limiter=NoLimit(),
        transport=recorder.transport(),
    )
    list(client.list_activities(state="completed"))
    client._send("GET", "/v3/activities?cursor=x")
    assert [str(r.url) for r in recorder.requests] == [
        "http://127.0.0.1:9/cc/v3/activities?state=completed&limit=50",
        "http://127.0.0.1:9/cc/v3/activities?cursor=x",
    ]
    with pytest.raises(FatalError, match="off the API host"):
        client.download_contact_export("https://evil.test/v3/contact_exports/f1")
    assert len(recorder.requests) == 2


# -- activities ------------------------------------------------------------------------------


def test_wait_polls_until_terminal_and_returns_failures_for_the_caller() -> None:
    states = iter(["initialized", "processing", "processing", "failed"])
    client, recorder, clock = _client(
        lambda r: json_response(200, activity(next(states), activity_errors=["bad row 3"]))
    )
    result = client.wait_for_activity(ACTIVITY_ID, poll_interval=2.0)
    assert result.state == "failed"
    assert result.activity_errors == ["bad row 3"]
    assert len(recorder.requests) == 4
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_wait_can_be_cancelled_and_times_out() -> None:
    client, _, _clock = _client(lambda r: json_response(200, activity("processing")))
    checks = iter([False, True])
    with pytest.raises(ActivityWaitCancelled):
        client.wait_for_activity(ACTIVITY_ID, should_cancel=lambda: next(checks))
    with pytest.raises(ActivityTimeoutError) as info:
        client.wait_for_activity(ACTIVITY_ID, poll_interval=5, timeout=60)
    assert info.value.context["state"] == "processing"
    assert isinstance(info.value, RetriableError)


def test_polls_pass_the_limiter() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(
        rate=4.0, daily_quota=100, clock=clock.time, sleep=clock.sleep, safety_margin=0
    )
    states = iter(["processing"] * 3 + ["completed"])
    client, recorder, _ = _client(
        lambda r: json_response(200, activity(next(states))), clock=clock, limiter=limiter
    )
    client.wait_for_activity(ACTIVITY_ID, poll_interval=0.0)
    assert len(recorder.requests) == 4
    assert limiter.day_count == 4
    assert clock.sleeps == pytest.approx([0.0, 0.25, 0.0, 0.25, 0.0, 0.25])


# -- faults ----------------------------------------------------------------------------------

THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}


def test_a_429_burst_is_retried_with_capped_jittered_logged_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = [json_response(429, THROTTLED)] * 5 + [json_response(200, activity("completed"))]
    limiter = NoLimit()
    client, recorder, clock = _client(_script(*answers), limiter=limiter)
    with caplog.at_level(logging.WARNING, logger="segment_export.constant_contact"):
        assert client.get_activity(ACTIVITY_ID).state == "completed"
    assert len(recorder.requests) == 6
    assert limiter.calls == 6  # every retry is paced too
    # base 0.5 s doubling, plus up to 1 s of jitter each
    for n, wait in enumerate(clock.sleeps):
        assert 0.5 * 2**n <= wait <= 0.5 * 2**n + 1.0
    waits = [r for r in caplog.records if "retrying GET" in r.getMessage()]
    assert len(waits) == 5
    assert "throttled" in waits[0].getMessage()
    assert waits[0].attempt == 1  # type: ignore[attr-defined]


def test_backoff_is_capped_and_gives_up_after_max_retries() -> None:
    client, recorder, clock = _client(
        lambda r: json_response(503, []), max_retries=9, backoff_cap=30.0
    )
    with pytest.raises(RetriableError) as info:
        client.get_activity(ACTIVITY_ID)
    assert info.value.context["status"] == 503
    assert len(recorder.requests) == 10
    assert max(clock.sleeps) == 30.0
    assert clock.sleeps[-1] == 30.0


def test_timeouts_and_connection_errors_are_retried() -> None:
    client, recorder, _ = _client(
        _script(
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
            httpx.RemoteProtocolError("eof"),
            json_response(200, activity("completed")),
        )
    )
    assert client.get_activity(ACTIVITY_ID).state == "completed"
    assert len(recorder.requests) == 4


def test_quota_exceeded_is_raised_at_once_with_the_reset_time() -> None:
    client, recorder, clock = _client(
        lambda r: json_response(
            429, {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}
        )
    )
    with pytest.raises(QuotaExhaustedError) as info:
        client.account_summary()
    assert info.value.resets_at == datetime(2026, 3, 15, tzinfo=UTC)
    assert len(recorder.requests) == 1
    assert clock.sleeps == []


def test_the_local_daily_budget_stops_before_sending() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(rate=4.0, daily_quota=2, clock=clock.time, sleep=clock.sleep)
    client, recorder, _ = _client(
        lambda r: json_response(200, activity()), clock=clock, limiter=limiter
    )
    client.get_activity(ACTIVITY_ID)
    client.get_activity(ACTIVITY_ID)
    with pytest.raises(QuotaExhaustedError):
        client.get_activity(ACTIVITY_ID)
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, FatalError), (404, NotFoundError), (409, FatalError), (415, FatalError)],
)
def test_client_errors_are_not_retried(status: int, error: type[Exception]) -> None:
    body = [{"error_key": "contacts.api.validation.error", "error_message": "name is taken"}]
    client, recorder, _ = _client(lambda r: json_response(status, body))
    with pytest.raises(error) as info:
        client.create_contact_list("Taken")
    assert info.value.context["errors"] == body  # type: ignore[attr-defined]
    assert len(recorder.requests) == 1


UNAUTHORIZED = {"error_key": "unauthorized", "error_message": "Unauthorized"}


def test_401_mid_run_refreshes_once_and_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer tok-1-abcdefgh":
            return json_response(401, UNAUTHORIZED)
        return json_response(200, activity("completed"))

    auth = FixedAuth()
    client, recorder, _ = _client(handler, auth=auth)
    assert client.get_activity(ACTIVITY_ID).state == "completed"
    assert auth.forced == ["tok-1-abcdefgh"]
    assert [r.headers["Authorization"] for r in recorder.requests] == [
        "Bearer tok-1-abcdefgh",
        "Bearer tok-2-abcdefgh",
    ]


def test_a_second_401_needs_reauthorization() -> None:
    auth = FixedAuth()
    client, recorder, _ = _client(lambda r: json_response(401, UNAUTHORIZED), auth=auth)
    with pytest.raises(ReauthorizationNeededError):
        client.get_activity(ACTIVITY_ID)
    assert len(auth.forced) == 1
    assert len(recorder.requests) == 2


def test_token_expiry_mid_run_with_the_real_provider() -> None:
    """A run that outlives its access token: the provider refreshes before expiry, and a token
    the server revoked early is replaced after one 401."""
    clock = FakeClock()
    start = token(clock, hours=1)
    store = InMemoryTokenStore(start)
    refreshes = 0
    valid: set[str] = {start.access_token}

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal refreshes
        if request.url.path.endswith("/token"):
            refreshes += 1
            new = f"access-after-refresh-{refreshes}"
            valid.add(new)
            return json_response(
                200,
                {
                    "access_token": new,
                    "expires_in": 3600,
                    "refresh_token": f"refresh-after-{refreshes}",
                },
            )
        bearer = request.headers["Authorization"].removeprefix("Bearer ")
        return (
            json_response(200, activity()) if bearer in valid else json_response(401, UNAUTHORIZED)
        )

    from segment_export.constant_contact.auth import OAuthClient

    transport = httpx.MockTransport(handler)
    oauth = OAuthClient(
        auth_url="https://authz.example.test/v1",
        client_id="cid",
        client_secret="csecret-1",
        transport=transport,
        now=clock.now,
        sleep=clock.sleep,
    )
    provider = RefreshingTokenProvider(store=store, oauth=oauth, now=clock.now)
    client = ConstantContactClient(
        api_url=API,
        auth=provider,
        limiter=NoLimit(),
        transport=transport,
        sleep=clock.sleep,
        now=clock.now,
        monotonic=clock.monotonic,
    )
    client.get_activity(ACTIVITY_ID)
    clock.advance(56 * 60)  # inside the 5-minute margin: refreshed before use
    client.get_activity(ACTIVITY_ID)
    assert refreshes == 1
    valid.clear()  # the server revokes every token it issued
    client.get_activity(ACTIVITY_ID)
    assert refreshes == 2
    stored = store.load().token
    assert stored is not None
    assert stored.refresh_token == "refresh-after-2"


def test_on_request_reports_every_attempt() -> None:
    seen: list[tuple[str, str, int | None, int, float]] = []
    client, _, _ = _client(
        _script(httpx.ConnectError("refused"), json_response(201, activity())),
        on_request=lambda *args: seen.append(args),
    )
    body = b'{"list_ids":["l"],"import_data":[]}'
    client.import_contacts(body)
    assert [(m, p, s, n) for m, p, s, n, _ in seen] == [
        ("POST", "/v3/activities/contacts_json_import", None, len(body)),
        ("POST", "/v3/activities/contacts_json_import", 201, len(body)),
    ]


class _BreaksMidBody(httpx.SyncByteStream):
    """A body whose connection drops after its first bytes."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"contact_id,email_address\nhalf-a-row"
        raise httpx.ReadError("connection reset mid-body")


def test_a_contact_export_downloads_into_a_file_and_a_retry_starts_it_again() -> None:
    body = b"contact_id,email_address\n" + b"".join(
        f"{i:08d}-0000-4000-8000-000000000000,p{i}@x.co\n".encode() for i in range(3000))
    client, recorder, _ = _client(_script(
        httpx.Response(200, stream=_BreaksMidBody()),
        httpx.Response(503, json={"error_key": "server_error"}),
        httpx.Response(200, content=body, headers={"Content-Type": "text/csv"}),
    ))
    with tempfile.TemporaryFile() as into:
        into.write(b"left over from before\n" * 10_000)
        assert client.download_contact_export_csv_into(f"{API}/exports/1.csv", into) == len(body)
        into.seek(0)
        assert into.read() == body  # neither the broken attempt's bytes nor older ones
    assert len(recorder.requests) == 3
