"""The client against the bundled emulator over real HTTP: OAuth, refresh races, pacing, faults."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings
from segment_export.constant_contact import (
    AuthorizationDeniedError,
    ConstantContactClient,
    InMemoryTokenStore,
    InProcessRateLimiter,
    OAuthClient,
    RefreshingTokenProvider,
    Token,
    TokenStore,
    iter_import_bodies,
    make_pkce_pair,
    new_state,
    parse_callback,
    save_token,
)
from segment_export.db.models import Connection
from segment_export.db.token_store import DatabaseTokenStore
from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.errors import (
    DataError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
)

CLIENT_ID = "segment-export-test"
CLIENT_SECRET = "emulator-client-secret-1"
REDIRECT = "http://127.0.0.1:9/oauth/callback"
# Limits out of the way for tests that are not about them.
ROOMY = {"requests_per_second": 1000, "daily_quota": 1_000_000, "token_requests_per_second": 1000}


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(**ROOMY)) as server:
        server.control.seed(
            apps=[
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [REDIRECT],
                }
            ],
            lists=["Newsletter"],
        )
        yield server


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Closes every client a test opened (an unclosed pool is a ResourceWarning, an error)."""
    with ExitStack() as closing:
        yield closing


def _fast() -> InProcessRateLimiter:
    return InProcessRateLimiter(rate=1000, daily_quota=10**6)


def _oauth(emu: EmulatorServer, stack: ExitStack) -> OAuthClient:
    # The 1 request/s token pacing has its own unit test; here it would only add seconds.
    return stack.enter_context(
        OAuthClient(
            auth_url=emu.auth_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, pacer=_fast()
        )
    )


def _client(stack: ExitStack, **kwargs: Any) -> ConstantContactClient:
    kwargs.setdefault("limiter", _fast())
    return stack.enter_context(ConstantContactClient(**kwargs))


def authorize(emu: EmulatorServer, oauth: OAuthClient) -> Token:
    """The whole connect flow as the product runs it: PKCE, state, consent, code exchange."""
    verifier, challenge = make_pkce_pair()
    state = new_state()
    url = oauth.authorize_url(redirect_uri=REDIRECT, state=state, code_challenge=challenge)
    callback = emu.control.approve_url(url)  # the admin clicks "Allow"
    code = parse_callback(callback, state)
    return oauth.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=verifier)


@dataclass
class Connected:
    emu: EmulatorServer
    oauth: OAuthClient
    store: TokenStore
    provider: RefreshingTokenProvider
    client: ConstantContactClient
    list_id: str

    def token_calls(self) -> int:
        return sum(1 for r in self.emu.control.requests() if r.path.endswith("/token"))


def connect(
    emu: EmulatorServer, stack: ExitStack, store: TokenStore | None = None, **client_kwargs: Any
) -> Connected:
    oauth = _oauth(emu, stack)
    token = authorize(emu, oauth)
    store = store or InMemoryTokenStore()
    save_token(store, token)
    provider = RefreshingTokenProvider(store=store, oauth=oauth)
    client = _client(stack, api_url=emu.api_url, auth=provider, **client_kwargs)
    (newsletter,) = client.list_contact_lists(name="Newsletter")
    return Connected(emu, oauth, store, provider, client, newsletter.list_id)


@pytest.fixture
def cc(emu: EmulatorServer, stack: ExitStack) -> Connected:
    return connect(emu, stack)


def _contacts(n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [
        {"email": f"{prefix}{i}@example.com", "first_name": "Ann", "last_name": f"L{i}"}
        for i in range(n)
    ]


# -- OAuth -----------------------------------------------------------------------------------


def test_code_flow_with_pkce_gives_a_working_refreshable_grant(cc: Connected) -> None:
    stored = cc.store.load().token
    assert stored is not None
    assert stored.refresh_token
    assert {"contact_data", "offline_access"} <= stored.scopes
    assert stored.expires_at - datetime.now(UTC) > timedelta(hours=23)
    summary = cc.client.account_summary()
    assert summary.encoded_account_id


def test_a_forged_callback_and_a_wrong_verifier_are_refused(
    emu: EmulatorServer, stack: ExitStack
) -> None:
    oauth = _oauth(emu, stack)
    verifier, challenge = make_pkce_pair()
    url = oauth.authorize_url(
        redirect_uri=REDIRECT, state="expected-state", code_challenge=challenge
    )
    callback = emu.control.approve_url(url)
    with pytest.raises(AuthorizationDeniedError):
        parse_callback(callback.replace("expected-state", "forged-state"), "expected-state")
    code = parse_callback(callback, "expected-state")
    other_verifier, _ = make_pkce_pair()
    with pytest.raises(ReauthorizationNeededError):
        oauth.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=other_verifier)
    denied = emu.control.approve_url(url, allow=False)
    with pytest.raises(AuthorizationDeniedError, match="access_denied"):
        parse_callback(denied, "expected-state")
    assert verifier  # the right verifier was never sent


def test_refresh_rotates_and_a_reused_refresh_token_is_dead(cc: Connected) -> None:
    before = cc.store.load().token
    assert before is not None
    assert before.refresh_token
    cc.emu.control.expire_tokens()
    cc.client.list_contact_lists()  # 401 -> one refresh -> retry
    after = cc.store.load().token
    assert after is not None
    assert after.refresh_token != before.refresh_token
    assert cc.token_calls() == 2  # the code exchange and one refresh
    # The spent token must never be used again: Constant Contact answers invalid_grant.
    with pytest.raises(ReauthorizationNeededError):
        cc.oauth.refresh(before.refresh_token)


def test_revoke_on_removal_ends_the_grant(
    emu: EmulatorServer, engine: Engine, sessions: sessionmaker[Session], stack: ExitStack
) -> None:
    connected = connect(emu, stack, _db_store(engine, sessions))
    token = connected.store.load().token
    assert token is not None
    assert token.refresh_token
    connected.oauth.revoke(token.refresh_token)
    emu.control.expire_tokens()
    with pytest.raises(ReauthorizationNeededError):
        connected.client.list_contact_lists()
    with sessions() as session:
        row = session.get(Connection, connected.store.connection_id)  # type: ignore[attr-defined]
        assert row is not None
        assert row.status == "reauthorization_needed"


# -- refresh races ---------------------------------------------------------------------------


def test_two_threads_refresh_once(
    emu: EmulatorServer, engine: Engine, sessions: sessionmaker[Session], stack: ExitStack
) -> None:
    store = _db_store(engine, sessions)
    connected = connect(emu, stack, store)
    _make_stale(store)
    results: list[int] = []
    go = threading.Barrier(2)

    def worker() -> None:
        provider = RefreshingTokenProvider(
            store=DatabaseTokenStore(engine, store.connection_id), oauth=_oauth(emu, stack)
        )
        client = _client(stack, api_url=emu.api_url, auth=provider)
        go.wait()
        results.append(len(client.list_contact_lists()))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [1, 1]
    assert connected.token_calls() == 2  # the code exchange and exactly one refresh


def _refresh_and_call(
    settings: Settings, url: str, connection_id: str, api_url: str, auth_url: str, go: Any, out: Any
) -> None:
    from segment_export.db import make_engine

    engine = make_engine(settings, url=url)
    with ExitStack() as stack:
        oauth = stack.enter_context(
            OAuthClient(auth_url=auth_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        )
        provider = RefreshingTokenProvider(
            store=DatabaseTokenStore(engine, connection_id), oauth=oauth
        )
        client = _client(stack, api_url=api_url, auth=provider)
        go.wait()
        try:
            out.put(("ok", len(client.list_contact_lists())))
        except Exception as exc:  # reported to the parent, which fails the test
            out.put(("error", repr(exc)))
    engine.dispose()


def test_two_processes_refresh_once(
    emu: EmulatorServer,
    engine: Engine,
    sessions: sessionmaker[Session],
    settings: Settings,
    stack: ExitStack,
) -> None:
    store = _db_store(engine, sessions)
    connected = connect(emu, stack, store)
    _make_stale(store)
    ctx = multiprocessing.get_context("fork")  # spawn re-imports for seconds on this machine
    go, out = ctx.Event(), ctx.Queue()
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        ctx.Process(
            target=_refresh_and_call,
            args=(settings, url, store.connection_id, emu.api_url, emu.auth_url, go, out),
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == [("ok", 1), ("ok", 1)]
    assert connected.token_calls() == 2
    assert store.load().version == 3  # authorized, refreshed once (+ the fixture's make-stale)


# -- data ------------------------------------------------------------------------------------


def test_import_poll_and_page(cc: Connected) -> None:
    contacts = _contacts(1_200)
    activities = []
    for batch in iter_import_bodies(contacts, list_ids=[cc.list_id], max_contacts=500):
        started = cc.client.import_contacts(batch.body)
        activities.append(cc.client.wait_for_activity(started.activity_id, poll_interval=0.05))
    assert [a.state for a in activities] == ["completed"] * 3
    assert [a.status.person_count for a in activities] == [500, 500, 200]
    assert cc.emu.control.list_members(cc.list_id) == {c["email"] for c in contacts}
    requests_before = len(cc.emu.control.requests())
    found = list(cc.client.find_contacts(lists=[cc.list_id], limit=500))
    assert len({c.email for c in found}) == 1_200
    pages = [r for r in cc.emu.control.requests()[requests_before:] if r.path == "/v3/contacts"]
    assert len(pages) == 3  # followed _links.next twice


def test_remove_memberships_by_id_and_export(cc: Connected) -> None:
    (batch,) = iter_import_bodies(_contacts(5), list_ids=[cc.list_id])
    cc.client.wait_for_activity(
        cc.client.import_contacts(batch.body).activity_id, poll_interval=0.05
    )
    leaver = next(cc.client.find_contacts(email="p3@example.com"))
    removal = cc.client.remove_list_memberships([leaver.contact_id], [cc.list_id])
    assert cc.client.wait_for_activity(removal.activity_id, poll_interval=0.05).state == "completed"
    assert "p3@example.com" not in cc.emu.control.list_members(cc.list_id)
    export = cc.client.create_contact_export(list_ids=[cc.list_id])
    done = cc.client.wait_for_activity(export.activity_id, poll_interval=0.05)
    assert done.results_href
    emails = {row["email_address"] for row in cc.client.download_contact_export(done.results_href)}
    assert emails == {f"p{i}@example.com" for i in (0, 1, 2, 4)}
    assert any(a.activity_id == export.activity_id for a in cc.client.list_activities(limit=10))


def test_contacts_updated_since_a_moment_by_their_ids(cc: Connected) -> None:
    (batch,) = iter_import_bodies(_contacts(6), list_ids=[cc.list_id])
    cc.client.wait_for_activity(
        cc.client.import_contacts(batch.body).activity_id, poll_interval=0.05
    )
    by_email = {c.email: c.contact_id for c in cc.client.find_contacts(lists=[cc.list_id])}
    time.sleep(0.01)
    since = datetime.now(UTC)
    time.sleep(0.01)
    edits = {"p1@example.com": "moved1@example.com", "p2@example.com": "p2.new@example.com",
             "p4@example.com": "moved4@example.com"}
    with httpx.Client(headers={"Authorization": f"Bearer {cc.provider.access_token()}"}) as http:
        for old, new in edits.items():
            answer = http.put(f"{cc.emu.api_url}/contacts/{by_email[old]}", json={
                "email_address": {"address": new}, "update_source": "Account"})
            assert answer.status_code == 200, answer.text
    expected = sorted((by_email[old], new) for old, new in edits.items())
    before = len(cc.emu.control.requests())
    assert sorted(cc.client.updated_contacts(updated_after=since, limit=2) or []) == expected
    pages = [r for r in cc.emu.control.requests()[before:] if r.path == "/v3/contacts"]
    assert len(pages) == 2  # followed _links.next, the filter kept by the cursor
    assert "updated_after=" in pages[0].query
    assert "status=all" in pages[0].query
    # Capped: the count on the first page says 2 pages; one is allowed: None, one request.
    before = len(cc.emu.control.requests())
    assert cc.client.updated_contacts(updated_after=since, limit=2, max_pages=1) is None
    assert len(cc.emu.control.requests()[before:]) == 1
    assert sorted(cc.client.updated_contacts(updated_after=since, limit=2, max_pages=2)
                  or []) == expected
    assert cc.client.updated_contacts(updated_after=datetime.now(UTC) + timedelta(hours=1)) == []
    other = cc.client.create_contact_list("Other").list_id
    assert cc.client.updated_contacts(updated_after=since, lists=[other]) == []
    assert cc.client.updated_contacts(updated_after=since,
                                      updated_before=since - timedelta(seconds=1)) == []
    with pytest.raises(DataError):
        cc.client.updated_contacts(updated_after=datetime(2027, 1, 1))  # noqa: DTZ001


# -- pacing and faults -----------------------------------------------------------------------


def test_paced_threads_draw_no_429_from_the_sliding_window(
    emu: EmulatorServer, stack: ExitStack
) -> None:
    rate = 20.0
    emu.control.set_config(requests_per_second=rate)
    connected = connect(emu, stack, limiter=InProcessRateLimiter(rate=rate, daily_quota=10**6))
    emu.control.clear_requests()
    time.sleep(1.0)  # the connect calls' second is over

    def worker() -> None:
        for _ in range(10):
            connected.client.get_contact_list(connected.list_id)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - started
    statuses = [r.status for r in emu.control.requests()]
    assert statuses.count(200) == 60
    assert 429 not in statuses
    assert elapsed >= 59 / rate  # paced, not bursting


def test_a_429_storm_and_a_5xx_burst_are_retried(
    cc: Connected, caplog: pytest.LogCaptureFixture, stack: ExitStack
) -> None:
    slept: list[float] = []
    client = _client(stack, api_url=cc.emu.api_url, auth=cc.provider, sleep=slept.append)
    cc.emu.control.inject_fault(kind="status", status=429, count=4)
    cc.emu.control.inject_fault(kind="status", status=503, count=2)
    assert client.get_contact_list(cc.list_id).name == "Newsletter"
    assert len(slept) == 6
    assert sum("retrying GET" in r.getMessage() for r in caplog.records) == 6
    faults = [r.fault for r in cc.emu.control.requests() if r.fault]
    assert faults == ["status:429"] * 4 + ["status:503"] * 2


def test_timeouts_and_a_lost_import_answer(cc: Connected, stack: ExitStack) -> None:
    slept: list[float] = []
    client = _client(
        stack, api_url=cc.emu.api_url, auth=cc.provider, timeout=0.3, sleep=slept.append
    )
    cc.emu.control.inject_fault(kind="slow", delay=0.8, count=1)
    assert client.get_contact_list(cc.list_id).list_id == cc.list_id
    # The import is accepted but its answer lost: the retry creates a second activity, and the
    # one returned is the one whose answer arrived. Importing twice is a harmless upsert.
    cc.emu.control.inject_fault(
        kind="drop", when="after", count=1, path_prefix="/v3/activities/contacts_json_import"
    )
    (batch,) = iter_import_bodies(_contacts(3), list_ids=[cc.list_id])
    started = client.import_contacts(batch.body)
    done = client.wait_for_activity(started.activity_id, poll_interval=0.05)
    assert done.state == "completed"
    imports = [a for a in client.list_activities() if a.activity_id and a.status.person_count]
    assert len(imports) == 2
    assert started.activity_id in {a.activity_id for a in imports}
    assert cc.emu.control.list_members(cc.list_id) == {c["email"] for c in _contacts(3)}
    assert len(slept) == 2


def test_token_expiry_mid_run(cc: Connected) -> None:
    batches = list(iter_import_bodies(_contacts(900), list_ids=[cc.list_id], max_contacts=300))
    for n, batch in enumerate(batches):
        if n == 1:
            cc.emu.control.expire_tokens()
        started = cc.client.import_contacts(batch.body)
        cc.client.wait_for_activity(started.activity_id, poll_interval=0.05)
    assert len(cc.emu.control.list_members(cc.list_id)) == 900
    statuses = [r.status for r in cc.emu.control.requests() if r.path.endswith("import")]
    assert statuses == [201, 401, 201, 201]
    assert cc.token_calls() == 2


def test_daily_quota_at_the_server_is_not_retried(cc: Connected) -> None:
    used = cc.emu.control.state()["usage_today"][CLIENT_ID]
    cc.emu.control.set_config(daily_quota=used + 1)
    cc.client.get_contact_list(cc.list_id)
    before = len(cc.emu.control.requests())
    with pytest.raises(QuotaExhaustedError) as info:
        cc.client.get_contact_list(cc.list_id)
    assert info.value.resets_at == datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
    )
    assert len(cc.emu.control.requests()) == before + 1


# -- helpers ---------------------------------------------------------------------------------


def _db_store(engine: Engine, sessions: sessionmaker[Session]) -> DatabaseTokenStore:
    with sessions() as session:
        connection = Connection(
            display_name="Emulator",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            api_key_hash="e" * 64,
        )
        session.add(connection)
        session.commit()
        return DatabaseTokenStore(engine, connection.id)


def _make_stale(store: TokenStore) -> None:
    """Make the stored access token look about to expire, so the next use refreshes it."""
    current = store.load().token
    assert current is not None
    save_token(
        store,
        Token(
            current.access_token,
            current.refresh_token,
            datetime.now(UTC) + timedelta(minutes=1),
            current.scope,
        ),
    )
