"""Token refresh on a frozen clock: before expiry, rotation persisted first, one at a time."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings
from segment_export.constant_contact.auth import OAuthClient, Token
from segment_export.constant_contact.tokens import (
    REAUTHORIZATION_NEEDED,
    InMemoryTokenStore,
    RefreshingTokenProvider,
    StaticTokenProvider,
    TokenStore,
    save_token,
)
from segment_export.db.models import Connection
from segment_export.db.token_store import DatabaseTokenStore
from segment_export.errors import NotFoundError, ReauthorizationNeededError
from tests.constant_contact.fakes import FakeClock, Recorder, json_response, token

AUTH_URL = "https://authz.example.test/oauth2/default/v1"


class TokenEndpoint:
    """A fake token endpoint with rotating refresh tokens: each works once."""

    def __init__(self, clock: FakeClock, first_refresh: str, *, on_call: Any = None) -> None:
        self.clock = clock
        self.valid = {first_refresh}
        self.calls = 0
        self.on_call = on_call

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.on_call:
            self.on_call()
        form = parse_qs(request.content.decode())
        old = form["refresh_token"][0]
        if old not in self.valid:
            return json_response(400, {"error": "invalid_grant", "error_description": "used"})
        self.valid.discard(old)
        n = self.calls
        self.valid.add(f"rotated-refresh-{n}-abcd")
        return json_response(
            200,
            {
                "access_token": f"rotated-access-{n}-abcd",
                "refresh_token": f"rotated-refresh-{n}-abcd",
                "expires_in": 86400,
                "scope": "contact_data offline_access",
                "token_type": "Bearer",
            },
        )


def _provider(
    store: TokenStore, endpoint: TokenEndpoint, clock: FakeClock
) -> RefreshingTokenProvider:
    oauth = OAuthClient(
        auth_url=AUTH_URL,
        client_id="cid",
        client_secret="csecret-123",
        transport=httpx.MockTransport(endpoint),
        now=clock.now,
        sleep=clock.sleep,
    )
    return RefreshingTokenProvider(store=store, oauth=oauth, now=clock.now)


def test_a_fresh_token_is_used_without_calling_the_endpoint() -> None:
    clock = FakeClock()
    start = token(clock)
    endpoint = TokenEndpoint(clock, start.refresh_token or "")
    provider = _provider(InMemoryTokenStore(start), endpoint, clock)
    assert provider.access_token() == start.access_token
    clock.advance(timedelta(hours=23, minutes=54).total_seconds())
    assert provider.access_token() == start.access_token
    assert endpoint.calls == 0


def test_refreshes_five_minutes_before_expiry_and_keeps_the_rotated_token() -> None:
    clock = FakeClock()
    start = token(clock)
    store = InMemoryTokenStore(start)
    endpoint = TokenEndpoint(clock, start.refresh_token or "")
    provider = _provider(store, endpoint, clock)
    clock.advance(timedelta(hours=23, minutes=55, seconds=1).total_seconds())
    assert provider.access_token() == "rotated-access-1-abcd"
    stored = store.load()
    assert stored.version == 1
    assert stored.token is not None
    assert stored.token.refresh_token == "rotated-refresh-1-abcd"
    assert stored.token.expires_at == clock.now() + timedelta(days=1)
    # A day later the rotated refresh token (not the spent one) is used.
    clock.advance(timedelta(days=1).total_seconds())
    assert provider.access_token() == "rotated-access-2-abcd"
    assert endpoint.calls == 2


def test_the_rotated_refresh_token_is_stored_before_the_access_token_is_returned(
    sqlite_engine: Engine, sessions_sqlite: sessionmaker[Session]
) -> None:
    clock = FakeClock()
    store = _db_store(sqlite_engine, sessions_sqlite, token(clock, hours=0.01))
    endpoint = TokenEndpoint(clock, "refresh-token-0001-yyyyyyyy")
    provider = _provider(store, endpoint, clock)
    access = provider.access_token()
    # A fresh process reading the database sees exactly the grant behind that access token.
    reloaded = DatabaseTokenStore(sqlite_engine, store.connection_id).load()
    assert reloaded.token is not None
    assert reloaded.token.access_token == access
    assert reloaded.token.refresh_token == "rotated-refresh-1-abcd"
    assert reloaded.status == "connected"


def test_a_forced_refresh_after_401_and_a_stale_one_that_lost_the_race() -> None:
    clock = FakeClock()
    start = token(clock)
    store = InMemoryTokenStore(start)
    endpoint = TokenEndpoint(clock, start.refresh_token or "")
    a, b = _provider(store, endpoint, clock), _provider(store, endpoint, clock)
    assert a.access_token() == b.access_token() == start.access_token
    assert a.force_refresh(start.access_token) == "rotated-access-1-abcd"
    # b got the same 401 for the same old token: it must take a's token, not refresh again.
    assert b.force_refresh(start.access_token) == "rotated-access-1-abcd"
    assert endpoint.calls == 1


def test_two_threads_refreshing_at_once_make_one_token_call(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    clock = FakeClock()
    store = _db_store(engine, sessions, token(clock, hours=0.01))
    inside = threading.Event()
    release = threading.Event()

    def slow() -> None:
        inside.set()
        release.wait(5)  # hold the first refresh open while the second thread arrives

    endpoint = TokenEndpoint(clock, "refresh-token-0001-yyyyyyyy", on_call=slow)
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            # Separate providers: like two workers, they share only the database.
            results.append(
                _provider(
                    DatabaseTokenStore(engine, store.connection_id), endpoint, clock
                ).access_token()
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    threads[0].start()
    assert inside.wait(5)
    threads[1].start()
    threads[1].join(0.3)  # the second one is blocked on the row lock, not calling the endpoint
    assert endpoint.calls == 1
    release.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert results == ["rotated-access-1-abcd", "rotated-access-1-abcd"]
    assert endpoint.calls == 1


def test_invalid_grant_marks_the_connection_and_raises(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    clock = FakeClock()
    store = _db_store(engine, sessions, token(clock, hours=0.01))
    endpoint = TokenEndpoint(clock, "some-other-refresh-token")  # ours was spent elsewhere
    provider = _provider(store, endpoint, clock)
    with pytest.raises(ReauthorizationNeededError):
        provider.access_token()
    with sessions() as session:
        connection = session.get(Connection, store.connection_id)
        assert connection is not None
        assert connection.status == REAUTHORIZATION_NEEDED
        assert "no longer accepts the stored grant" in (connection.last_error or "")
    # From now on nothing calls the endpoint again until someone re-authorizes.
    with pytest.raises(ReauthorizationNeededError):
        provider.access_token()
    assert endpoint.calls == 1
    save_token(store, token(clock, 9))
    assert provider.force_refresh("whatever") == token(clock, 9).access_token


def test_no_grant_or_no_refresh_token() -> None:
    clock = FakeClock()
    endpoint = TokenEndpoint(clock, "x")
    with pytest.raises(ReauthorizationNeededError, match="not been authorized"):
        _provider(InMemoryTokenStore(), endpoint, clock).access_token()
    expired = Token("access-no-refresh-1", None, clock.now() - timedelta(seconds=1))
    with pytest.raises(ReauthorizationNeededError, match="no refresh token"):
        _provider(InMemoryTokenStore(expired), endpoint, clock).access_token()
    assert endpoint.calls == 0


def test_a_long_lived_refresh_token_that_does_not_come_back_is_kept() -> None:
    clock = FakeClock()
    store = InMemoryTokenStore(token(clock, hours=0))
    body = {"access_token": "long-lived-access-1", "expires_in": 86400, "scope": "contact_data"}
    oauth = OAuthClient(
        auth_url=AUTH_URL,
        client_id="cid",
        client_secret="csecret-123",
        transport=Recorder(lambda r: json_response(200, body)).transport(),
        now=clock.now,
        sleep=clock.sleep,
    )
    RefreshingTokenProvider(store=store, oauth=oauth, now=clock.now).access_token()
    stored = store.load().token
    assert stored is not None
    assert stored.refresh_token == "refresh-token-0001-yyyyyyyy"


def test_the_database_store_encrypts_and_bumps_the_version(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    clock = FakeClock()
    store = _db_store(engine, sessions, token(clock))
    first = store.load()
    assert first.version == 1
    new = token(clock, 2)
    assert save_token(store, new).version == 2
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT access_token, refresh_token FROM connections")).one()
    assert new.access_token.encode() not in bytes(raw[0])
    assert (new.refresh_token or "").encode() not in bytes(raw[1])
    loaded = store.load()
    assert loaded.token == new
    with pytest.raises(NotFoundError):
        DatabaseTokenStore(engine, "no-such-connection").load()


def test_static_provider_cannot_refresh() -> None:
    provider = StaticTokenProvider("static-access-token-1")
    assert provider.access_token() == "static-access-token-1"
    with pytest.raises(ReauthorizationNeededError):
        provider.force_refresh("static-access-token-1")


# -- across processes ------------------------------------------------------------------------


def _refresh_in_child(settings: Settings, url: str, connection_id: str, go: Any, out: Any) -> None:
    from segment_export.db import make_engine

    engine = make_engine(settings, url=url)
    clock = FakeClock()
    calls = 0

    def endpoint(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        refresh = parse_qs(request.content.decode())["refresh_token"][0]
        return json_response(
            200,
            {
                "access_token": f"child-access-for-{refresh}",
                "refresh_token": f"child-refresh-{id(request)}",
                "expires_in": 86400,
            },
        )

    oauth = OAuthClient(
        auth_url=AUTH_URL,
        client_id="cid",
        client_secret="csecret-123",
        transport=httpx.MockTransport(endpoint),
        now=clock.now,
        sleep=clock.sleep,
    )
    provider = RefreshingTokenProvider(
        store=DatabaseTokenStore(engine, connection_id), oauth=oauth, now=clock.now
    )
    go.wait()
    out.put((provider.access_token(), calls))
    engine.dispose()


def test_two_processes_refreshing_at_once_make_one_token_call(
    engine: Engine, sessions: sessionmaker[Session], settings: Settings
) -> None:
    clock = FakeClock()
    store = _db_store(engine, sessions, token(clock, hours=0.01))
    ctx = multiprocessing.get_context("fork")  # see test_ratelimit: spawn re-imports for seconds
    go, out = ctx.Event(), ctx.Queue()
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        ctx.Process(target=_refresh_in_child, args=(settings, url, store.connection_id, go, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    tokens = {access for access, _ in results}
    assert tokens == {"child-access-for-refresh-token-0001-yyyyyyyy"}
    assert sorted(calls for _, calls in results) == [0, 1]
    stored = store.load()
    assert stored.version == 2
    with sessions() as session:
        assert session.scalar(select(Connection.token_version)) == 2


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def sessions_sqlite(sqlite_engine: Engine) -> sessionmaker[Session]:
    from segment_export.db import make_session_factory

    return make_session_factory(sqlite_engine)


def _db_store(engine: Engine, sessions: sessionmaker[Session], start: Token) -> DatabaseTokenStore:
    with sessions() as session:
        connection = Connection(
            display_name="Newsletter",
            client_id="cid",
            client_secret="csecret-123",
            api_key_hash="k" * 64,
        )
        session.add(connection)
        session.commit()
        connection_id = connection.id
    store = DatabaseTokenStore(engine, connection_id)
    save_token(store, start)
    return store
