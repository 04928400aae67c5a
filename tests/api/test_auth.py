"""Signing in: argon2 passwords, session cookies, fixation, logout, CSRF, API tokens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from segment_export.api.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, _hash
from segment_export.db.models import ApiToken, User, WebSession
from segment_export.db.types import utcnow
from segment_export.errors import DataError, PermissionDeniedError
from segment_export.users import (
    AuthenticationError,
    Role,
    UserSpec,
    authenticate,
    create_api_token,
    create_user,
    disable_user,
    first_start,
    revoke_api_token,
    set_password,
    user_for_token,
)
from tests.api.harness import PASSWORDS, AppWorld, app_world, make_settings


def test_passwords_are_argon2_and_checked(site: AppWorld) -> None:
    with site.runtime.sessions.begin() as db:
        admin = db.scalars(select(User).where(User.username == "admin")).one()
        assert admin.password_hash is not None
        assert admin.password_hash.startswith("$argon2id$")
        assert PASSWORDS["admin"] not in admin.password_hash
        assert authenticate(db, username="admin", password=PASSWORDS["admin"]).id == admin.id
        with pytest.raises(AuthenticationError, match="Wrong user name or password"):
            authenticate(db, username="admin", password="not-the-password")
        with pytest.raises(AuthenticationError, match="Wrong user name or password"):
            authenticate(db, username="nobody", password=PASSWORDS["admin"])
        with pytest.raises(DataError, match="at least 10"):
            create_user(
                db, spec=UserSpec(username="short", role=Role.VIEWER, password="short"), actor=admin
            )


def test_first_start_gives_the_admin_a_password_once(sessions: sessionmaker[Session]) -> None:
    factory = sessions
    with factory.begin() as db:
        admin, generated = first_start(db, password=None)
        assert generated is not None
        assert len(generated) >= 16
        assert authenticate(db, username=admin.username, password=generated).id == admin.id
    with factory.begin() as db:
        again, second = first_start(db, password="ignored-now-12345")
        assert again.id == admin.id
        assert second is None
        with pytest.raises(AuthenticationError):
            authenticate(db, username=admin.username, password="ignored-now-12345")


def test_first_start_uses_the_configured_password(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as db:
        admin, generated = first_start(db, password="from-the-environment-1")
        assert generated is None
        assert authenticate(db, username=admin.username, password="from-the-environment-1")


def test_login_sets_a_safe_cookie_and_a_new_session_id(site_any_db: AppWorld) -> None:
    client = site_any_db.web()
    # A session id planted before sign-in (fixation) is never promoted to a signed-in one.
    planted = "planted-session-id-0123456789"
    client.set_session(planted)
    response = client.login("contributor", PASSWORDS["contributor"], next_url="/data/exports")
    assert response.status_code == 303
    assert response.headers["location"] == "/data/exports"
    cookie_header = next(v for k, v in response.headers.multi_items()
                         if k == "set-cookie" and v.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie_header
    assert "SameSite=lax" in cookie_header or "samesite=lax" in cookie_header.lower()
    assert "Secure" not in cookie_header  # plain http on loopback
    value = client.session_cookie
    assert value
    assert value != planted
    with site_any_db.runtime.sessions() as db:
        assert db.get(WebSession, _hash(planted)) is None
        stored = db.get(WebSession, _hash(value))
        assert stored is not None
        assert stored.user_id == site_any_db.users["contributor"].id
        assert value not in {stored.id_hash, stored.csrf_token}  # only the hash is stored
    page = client.get("/data/exports")
    assert page.status_code == 200
    assert "contributor" in page.text


def test_secure_cookie_behind_an_https_public_url(tmp_path: Path) -> None:
    config = make_settings(tmp_path / "d", public_url="https://exports.example.com")
    with app_world(config, profiles=0) as world:
        page = httpx.get(world.url + "/login")
        token = page.cookies.get(LOGIN_CSRF_COOKIE)
        assert token
        assert "Secure" in page.headers["set-cookie"]
        # The test speaks plain http; a browser would be on https and send the cookie back.
        response = httpx.post(world.url + "/login", headers={
            "Cookie": f"{LOGIN_CSRF_COOKIE}={token}"}, data={
            "username": "viewer", "password": PASSWORDS["viewer"], "login_csrf": token})
        assert response.status_code == 303
        cookie_header = next(v for k, v in response.headers.multi_items()
                             if k == "set-cookie" and v.startswith(SESSION_COOKIE + "="))
        assert "Secure" in cookie_header
        assert "HttpOnly" in cookie_header


def test_wrong_password_and_login_csrf_are_refused(site: AppWorld) -> None:
    client = site.web()
    wrong = client.login("admin", "not-the-password")
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.text
    assert SESSION_COOKIE not in client.http.cookies
    # A login posted from elsewhere carries no double-submit token.
    forged = httpx.post(site.url + "/login", data={"username": "admin",
                                                   "password": PASSWORDS["admin"]})
    assert forged.status_code == 403
    assert SESSION_COOKIE not in forged.cookies


def test_login_never_redirects_off_site(site: AppWorld) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client = site.web()
        response = client.login("viewer", PASSWORDS["viewer"], next_url=target)
        assert response.status_code == 303
        assert response.headers["location"] == "/"


def test_logout_ends_the_session_on_the_server(site: AppWorld) -> None:
    client = site.web()
    client.login("viewer", PASSWORDS["viewer"])
    cookie = client.session_cookie
    assert cookie
    out = client.post("/logout")
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    # Replaying the old cookie no longer works: the server forgot the session.
    replay = httpx.get(site.url + "/data/exports", cookies={SESSION_COOKIE: cookie})
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/login")
    api = httpx.get(site.url + "/api/me", cookies={SESSION_COOKIE: cookie})
    assert api.status_code == 401


def test_expired_session_is_refused(site: AppWorld) -> None:
    client = site.browser("viewer")
    assert client.get("/api/me").status_code == 200
    with site.runtime.sessions.begin() as db:
        for row in db.scalars(select(WebSession)):
            row.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/api/me").status_code == 401


def test_csrf_is_required_on_every_state_change(site_any_db: AppWorld) -> None:
    client = site_any_db.browser("admin")
    # A form without the token, and one with a wrong token.
    no_token = client.post("/settings/schedule", {"cron": "0 5 * * *"}, csrf=False)
    assert no_token.status_code == 403
    assert "security token" in no_token.text
    wrong = client.post("/settings/schedule", {"cron": "0 5 * * *", "csrf_token": "x" * 40})
    assert wrong.status_code == 403
    # The JSON API with the session cookie needs the header too.
    api = client.http.put("/api/schedule", json={"cron": "0 5 * * *"})
    assert api.status_code == 403
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["code"] == "csrf_failed"
    with site_any_db.runtime.sessions() as db:
        from segment_export.scheduling.schedules import get_refresh_schedule

        assert get_refresh_schedule(db).cron is None  # nothing changed
    ok = client.http.put("/api/schedule", json={"cron": "0 5 * * *"},
                         headers={"X-CSRF-Token": client.csrf})
    assert ok.status_code == 200, ok.text
    assert client.post("/settings/schedule", {"cron": "0 6 * * *"}).status_code == 303
    # A token from another session does not do either.
    other = site_any_db.browser("admin")
    stolen = client.http.put("/api/schedule", json={"cron": "0 7 * * *"},
                             headers={"X-CSRF-Token": other.csrf})
    assert stolen.status_code == 403


def test_api_tokens_authenticate_and_stop_when_revoked(site_any_db: AppWorld) -> None:
    with site_any_db.runtime.sessions.begin() as db:
        owner = db.merge(site_any_db.users["contributor"])
        issued = create_api_token(db, actor=owner, user=owner, name="script")
        stored = db.get(ApiToken, issued.token.id)
        assert stored is not None
        assert issued.secret.startswith("se_")
        assert issued.secret not in stored.token_hash
        assert stored.prefix == issued.secret[:11]
    headers = {"Authorization": f"Bearer {issued.secret}"}
    me = httpx.get(site_any_db.url + "/api/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["username"] == "contributor"
    with site_any_db.runtime.sessions() as db:
        used = db.get(ApiToken, issued.token.id)
        assert used is not None
        assert used.last_used_at is not None
    # Token calls need no CSRF token: browsers never attach them on their own.
    created = httpx.post(site_any_db.url + "/api/me/tokens", headers=headers,
                         json={"name": "second", "password": PASSWORDS["contributor"]})
    assert created.status_code == 201
    with site_any_db.runtime.sessions.begin() as db:
        revoke_api_token(db, actor=db.merge(site_any_db.users["contributor"]),
                         token=db.get(ApiToken, issued.token.id))
    assert httpx.get(site_any_db.url + "/api/me", headers=headers).status_code == 401
    assert httpx.get(site_any_db.url + "/api/me", headers={"Authorization": "Bearer se_nope"}
                     ).status_code == 401
    basic = httpx.get(site_any_db.url + "/api/me", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"] == "Bearer"


def test_disabling_a_user_ends_sessions_and_tokens(site_any_db: AppWorld) -> None:
    victim = site_any_db.user(Role.CONTRIBUTOR)
    with site_any_db.runtime.sessions.begin() as db:
        issued = create_api_token(db, actor=db.merge(victim), user=db.merge(victim), name="t")
    browser = site_any_db.web()
    with site_any_db.runtime.sessions.begin() as db:
        from segment_export.api.auth import start_web_session

        cookie, _ = start_web_session(db, user=db.merge(victim), settings=site_any_db.settings)
    browser.set_session(cookie)
    assert browser.get("/api/me").status_code == 200
    with site_any_db.runtime.sessions.begin() as db:
        disable_user(db, actor=db.merge(site_any_db.users["admin"]), username=victim.username)
    assert browser.get("/api/me").status_code == 401
    assert httpx.get(site_any_db.url + "/api/me", headers={
        "Authorization": f"Bearer {issued.secret}"}).status_code == 401
    with site_any_db.runtime.sessions() as db, pytest.raises(AuthenticationError):
        user_for_token(db, secret=issued.secret)


def test_password_change_ends_other_sessions(site: AppWorld) -> None:
    user = site.user(Role.VIEWER)
    with site.runtime.sessions.begin() as db:
        from segment_export.api.auth import start_web_session

        cookie, _ = start_web_session(db, user=db.merge(user), settings=site.settings)
        set_password(db, actor=db.merge(user), user=db.merge(user), password="a-new-password-1")
    assert httpx.get(site.url + "/api/me", cookies={SESSION_COOKIE: cookie}).status_code == 401
    with site.runtime.sessions() as db:
        assert authenticate(db, username=user.username, password="a-new-password-1")


def test_only_admins_manage_other_peoples_passwords_and_tokens(site: AppWorld) -> None:
    other = site.user(Role.VIEWER)
    with site.runtime.sessions.begin() as db:
        contributor = db.merge(site.users["contributor"])
        with pytest.raises(PermissionDeniedError):
            set_password(db, actor=contributor, user=db.merge(other), password="x" * 12)
        with pytest.raises(PermissionDeniedError):
            create_api_token(db, actor=contributor, user=db.merge(other), name="t")
    # Another user's token id is not revealed through the self-service route.
    token_id = site.token_of("viewer")
    gone = site.api("contributor").delete(f"/api/me/tokens/{token_id}")
    assert gone.status_code == 404
