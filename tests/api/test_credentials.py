"""Credentials end with the password: a change (own or an admin's reset) revokes the user's API
tokens and signs out their other sessions; issuing a token asks for the password again; wrong
passwords asked again are throttled like failed sign-ins. For every role, over real HTTP."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import select

from segment_export.api.throttle import PER_ACCOUNT
from segment_export.db.models import ApiToken, AuditEvent, User
from segment_export.users import Role, UserSpec, create_api_token, create_user, hash_password
from tests.api.harness import PASSWORDS, AppWorld, WebClient

SIGNED_IN_ROLES = ("viewer", "contributor", "admin")
NEW_PASSWORD = "a-brand-new-password-9"


def _person(world: AppWorld, role: str) -> tuple[str, str, str]:
    """A fresh user of ``role`` with a known password and an API token: (name, password,
    token)."""
    password = f"pw-{uuid.uuid4().hex}"
    with world.runtime.sessions.begin() as db:
        user = create_user(
            db, spec=UserSpec(username=f"u-{uuid.uuid4().hex[:8]}", role=Role(role)), actor=None
        )
        user.password_hash = hash_password(password)
        token = create_api_token(db, actor=user, user=user, name="script").secret
        return user.username, password, token


def _me(world: AppWorld, token: str) -> int:
    return httpx.get(world.url + "/api/me", headers={"Authorization": f"Bearer {token}"}
                     ).status_code


def _signed_in(world: AppWorld, username: str, password: str) -> WebClient:
    client = world.web()
    assert client.login(username, password).status_code == 303
    return client


# -- a password change revokes tokens and other sessions -----------------------------------


@pytest.mark.parametrize("role", SIGNED_IN_ROLES)
def test_changing_your_password_revokes_your_tokens_and_other_sessions(
        site: AppWorld, role: str) -> None:
    username, password, token = _person(site, role)
    here, elsewhere = _signed_in(site, username, password), _signed_in(site, username, password)
    assert _me(site, token) == 200
    changed = here.post("/account/password", {"current": password, "new": NEW_PASSWORD})
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == "/account"
    # This browser stays signed in, on a new session, and the page says what happened.
    page = here.get("/account")
    assert page.status_code == 200
    assert "You stay signed in here; 1 other session signed out and 1 API token revoked" in (
        page.text)
    assert here.get("/api/me").status_code == 200
    # Everything else made with the old password is gone.
    assert elsewhere.get("/api/me").status_code == 401
    assert _me(site, token) == 401
    with site.runtime.sessions() as db:
        user = db.scalars(select(User).where(User.username == username)).one()
        assert db.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                 ApiToken.revoked_at.is_(None))).all() == []
        event = db.scalars(select(AuditEvent).where(
            AuditEvent.action == "user.password_set", AuditEvent.target_id == user.id)).one()
        assert event.details["tokens_revoked"] == 1
        assert event.details["sessions_ended"] == 2
    assert site.web().login(username, NEW_PASSWORD).status_code == 303


@pytest.mark.parametrize("role", SIGNED_IN_ROLES)
def test_an_admin_reset_revokes_the_users_tokens_and_sessions(site: AppWorld, role: str) -> None:
    username, password, token = _person(site, role)
    browser = _signed_in(site, username, password)
    reset = site.api("admin").put(f"/api/users/{username}/password",
                                  json={"password": NEW_PASSWORD})
    assert reset.status_code == 204, reset.text
    assert _me(site, token) == 401
    assert browser.get("/api/me").status_code == 401
    # The admin's own token is untouched by resetting someone else.
    assert site.api("admin").get("/api/me").status_code == 200


def test_the_account_page_says_what_a_password_change_ends(site: AppWorld) -> None:
    page = site.browser("viewer").get("/account")
    assert "signs you out everywhere else and revokes all your API tokens" in page.text
    assert 'name="password" type="password"' in page.text  # asked for to create a token


# -- issuing a token asks for the password again -------------------------------------------


@pytest.mark.parametrize("role", SIGNED_IN_ROLES)
def test_issuing_a_token_over_the_api_needs_the_password(site: AppWorld, role: str) -> None:
    username, password, token = _person(site, role)
    api = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {token}"})
    with api:
        missing = api.post("/api/me/tokens", json={"name": "stolen"})
        assert missing.status_code == 422
        refused = api.post("/api/me/tokens", json={"name": "stolen", "password": "not-it-123"})
        assert refused.status_code == 400
        assert refused.json()["code"] == "invalid_data"
        assert refused.json()["field"] == "password"
        assert "current password is not correct" in refused.json()["detail"]
        made = api.post("/api/me/tokens", json={"name": "mine", "password": password})
        assert made.status_code == 201, made.text
        assert _me(site, made.json()["token"]) == 200
    with site.runtime.sessions() as db:
        names = set(db.scalars(select(ApiToken.name).join(User, User.id == ApiToken.user_id)
                               .where(User.username == username)))
    assert names == {"script", "mine"}


@pytest.mark.parametrize("role", SIGNED_IN_ROLES)
def test_issuing_a_token_on_the_account_page_needs_the_password(
        site: AppWorld, role: str) -> None:
    username, password, _token = _person(site, role)
    browser = _signed_in(site, username, password)
    for form in ({"name": "stolen"}, {"name": "stolen", "password": "not-it-123"}):
        refused = browser.post("/account/tokens", form)
        assert refused.status_code == 422
        assert '<code class="secret">' not in refused.text  # no token shown
        assert "current password is not correct" in refused.text
    made = browser.post("/account/tokens", {"name": "mine", "password": password})
    assert made.status_code == 200
    secret = re.search(r'<code class="secret">(se_[^<]+)</code>', made.text)
    assert secret is not None
    assert _me(site, secret.group(1)) == 200


# -- wrong passwords asked again are throttled ---------------------------------------------


def test_wrong_current_passwords_on_the_account_page_are_throttled(site: AppWorld) -> None:
    username, password, token = _person(site, "contributor")
    browser = _signed_in(site, username, password)
    for _ in range(PER_ACCOUNT.amount):
        wrong = browser.post("/account/password", {"current": "guess-" + uuid.uuid4().hex,
                                                   "new": NEW_PASSWORD})
        assert wrong.status_code == 422
    locked = browser.post("/account/password", {"current": password, "new": NEW_PASSWORD})
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    assert "Too many wrong passwords" in locked.text
    # Nothing changed: the old password and the token still work.
    assert _me(site, token) == 200
    # The same count guards issuing tokens and signing in from this client.
    minted = browser.post("/account/tokens", {"name": "x", "password": password})
    assert minted.status_code == 429
    assert site.web().login(username, password).status_code == 429


def test_wrong_passwords_when_issuing_tokens_over_the_api_are_throttled(site: AppWorld) -> None:
    _username, password, token = _person(site, "viewer")
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {token}"}) as api:
        for _ in range(PER_ACCOUNT.amount):
            assert api.post("/api/me/tokens", json={
                "name": "t", "password": "guess-" + uuid.uuid4().hex}).status_code == 400
        locked = api.post("/api/me/tokens", json={"name": "t", "password": password})
        assert locked.status_code == 429
        assert locked.headers["content-type"] == "application/problem+json"
        assert locked.json()["code"] == "too_many_attempts"
        assert 0 < int(locked.headers["retry-after"]) <= 15 * 60 + 1
        # Other users from the same client are not locked out by this one's failures.
        other = site.api("admin").post("/api/me/tokens", json={
            "name": "t", "password": PASSWORDS["admin"]})
        assert other.status_code == 201
