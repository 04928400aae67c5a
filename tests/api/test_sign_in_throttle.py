"""Repeated wrong passwords lock the name for a while; a right one before that clears it."""

from __future__ import annotations

import uuid

from segment_export.api.auth import SESSION_COOKIE
from segment_export.api.throttle import PER_USER, SignInThrottle
from tests.api.harness import PASSWORDS, AppWorld
from tests.services import REDIS_URL, port_open, require


def test_five_wrong_passwords_lock_the_name_even_for_the_right_one(site: AppWorld) -> None:
    client = site.web()
    for _ in range(PER_USER.amount):
        assert client.login("contributor", "guess-" + uuid.uuid4().hex).status_code == 401
    locked = client.login("contributor", PASSWORDS["contributor"])
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    assert SESSION_COOKIE not in client.http.cookies
    # Another name from the same address is not locked out by this one's failures.
    assert client.login("viewer", PASSWORDS["viewer"]).status_code == 303


def test_a_right_password_clears_the_count(site: AppWorld) -> None:
    client = site.web()
    for _ in range(PER_USER.amount - 1):
        assert client.login("viewer", "guess-" + uuid.uuid4().hex).status_code == 401
    assert client.login("viewer", PASSWORDS["viewer"]).status_code == 303
    other = site.web()
    for _ in range(PER_USER.amount - 1):
        assert other.login("viewer", "guess-" + uuid.uuid4().hex).status_code == 401
    assert other.login("viewer", PASSWORDS["viewer"]).status_code == 303


def test_names_are_counted_case_blind_and_addresses_apart() -> None:
    throttle = SignInThrottle()
    for _ in range(PER_USER.amount):
        throttle.failed("Admin ", "10.0.0.1")
    assert throttle.wait_seconds("admin", "10.0.0.2") > 0
    assert throttle.wait_seconds("someone", "10.0.0.1") == 0


def test_web_processes_sharing_redis_share_the_count() -> None:
    require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    name = "user-" + uuid.uuid4().hex
    first, second = SignInThrottle(REDIS_URL), SignInThrottle(REDIS_URL)
    for _ in range(PER_USER.amount):
        first.failed(name, "10.1.1.1")
    assert second.wait_seconds(name, "10.1.1.9") > 0
    second.succeeded(name)
    assert first.wait_seconds(name, "10.1.1.9") == 0
