"""Failed password checks are throttled per account and client and per client, counted
atomically (parallel guesses cannot slip past the limit), never locking an account out for
everyone; X-Forwarded-For is believed only from the configured proxies.

Attacks are made over real HTTP against the app on a port; the password verifications the
server really made are counted by wrapping its argon2 hasher.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from segment_export import users
from segment_export.api.auth import SESSION_COOKIE
from segment_export.api.server import _config, trusted_proxies
from segment_export.api.throttle import (
    PER_ACCOUNT,
    PER_CLIENT,
    SignInThrottle,
    TooManyAttemptsError,
    client_key,
)
from segment_export.errors import ConfigurationError
from tests.api.harness import PASSWORDS, AppWorld, app_world, make_settings
from tests.services import REDIS_URL, port_open, require

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ATTACKER = "203.0.113.66"
ADMIN_DESK = "198.51.100.7"


class CountingHasher:
    """The real hasher, counting the verifications (each one is a password checked)."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.verified = 0
        self._lock = threading.Lock()

    def verify(self, stored: str, password: str) -> bool:
        with self._lock:
            self.verified += 1
        return self.real.verify(stored, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(users._hasher)
    users._dummy_hash()  # made before counting starts
    monkeypatch.setattr(users, "_hasher", counting)
    return counting


def shipped_trusted_proxies() -> str:
    """SEGMENT_EXPORT_TRUSTED_PROXIES as the shipped web unit sets it."""
    unit = (DEPLOY / "segment-export-web.service").read_text()
    found = re.search(r"^Environment=SEGMENT_EXPORT_TRUSTED_PROXIES=(\S+)$", unit, re.M)
    assert found, "the web unit sets no SEGMENT_EXPORT_TRUSTED_PROXIES"
    return found.group(1)


@contextmanager
def world_with(tmp_path: Path, **overrides: Any) -> Iterator[AppWorld]:
    with app_world(make_settings(tmp_path / "d", **overrides), profiles=0) as world:
        yield world


class Login:
    """One sign-in, its form fetched beforehand so that many can be posted at one instant."""

    def __init__(self, url: str, username: str, password: str,
                 forwarded_for: str | None = None) -> None:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=120)
        page = self.http.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token is not None
        self.form = {"username": username, "password": password, "login_csrf": token.group(1),
                     "next": "/"}

    def post(self) -> httpx.Response:
        try:
            return self.http.post("/login", data=self.form)
        finally:
            self.http.close()


def login(world: AppWorld, username: str, password: str,
          forwarded_for: str | None = None) -> httpx.Response:
    return Login(world.url, username, password, forwarded_for).post()


def post_at_once(logins: list[Login]) -> list[int]:
    """Post every sign-in from its own thread, released together; their status codes."""
    barrier = threading.Barrier(len(logins))
    statuses: list[int] = []
    lock = threading.Lock()

    def go(attempt: Login) -> None:
        barrier.wait()
        status = attempt.post().status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=go, args=(a,)) for a in logins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert len(statuses) == len(logins)
    return statuses


def wrong() -> str:
    return "guess-" + uuid.uuid4().hex


# -- atomic counting ---------------------------------------------------------------------


def _parallel_guesses(world: AppWorld, hasher: CountingHasher, *,
                      forwarded_for: str | None = None) -> None:
    attacks = [Login(world.url, "admin", wrong(), forwarded_for) for _ in range(25)]
    hasher.verified = 0
    statuses = post_at_once(attacks)
    assert hasher.verified <= PER_ACCOUNT.amount, statuses
    assert statuses.count(401) <= PER_ACCOUNT.amount
    assert statuses.count(429) >= 25 - PER_ACCOUNT.amount, statuses
    # The limit holds for the right password too, from the attacker's address.
    assert login(world, "admin", PASSWORDS["admin"], forwarded_for).status_code == 429


def test_parallel_wrong_passwords_are_checked_at_most_five_times(
        site: AppWorld, hasher: CountingHasher) -> None:
    _parallel_guesses(site, hasher)


@pytest.mark.redis
def test_parallel_wrong_passwords_with_the_counts_in_redis(
        tmp_path: Path, hasher: CountingHasher) -> None:
    require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    # A client address of its own: counts in Redis outlive the test by 15 minutes.
    client = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    with world_with(tmp_path, redis_url=REDIS_URL, queue_name="t-" + uuid.uuid4().hex,
                    trusted_proxies="127.0.0.1") as world:
        _parallel_guesses(world, hasher, forwarded_for=client)


def test_a_parallel_sweep_over_many_names_stops_at_the_client_limit(
        site: AppWorld, hasher: CountingHasher) -> None:
    sweep = [Login(site.url, f"name-{i}", wrong()) for i in range(PER_CLIENT.amount + 10)]
    hasher.verified = 0
    statuses = post_at_once(sweep)
    assert hasher.verified <= PER_CLIENT.amount, statuses
    assert statuses.count(429) >= 10, statuses


# -- per account and client: never a lockout for everyone -------------------------------


def test_an_attacker_cannot_lock_the_admin_out_from_another_address(tmp_path: Path) -> None:
    with world_with(tmp_path, trusted_proxies=shipped_trusted_proxies()) as world:
        statuses = [login(world, "admin", wrong(), ATTACKER).status_code for _ in range(7)]
        assert statuses == [401] * 5 + [429] * 2
        # Meanwhile the admin, at their desk, signs in as usual (and again after).
        assert login(world, "admin", PASSWORDS["admin"], ADMIN_DESK).status_code == 303
        assert login(world, "admin", wrong(), ATTACKER).status_code == 429
        assert login(world, "admin", PASSWORDS["admin"], ADMIN_DESK).status_code == 303


def test_thirty_failures_behind_the_shipped_proxy_lock_out_only_their_client(
        tmp_path: Path) -> None:
    with world_with(tmp_path, trusted_proxies=shipped_trusted_proxies()) as world:
        sweep = [Login(world.url, f"name-{i}", wrong(), ATTACKER)
                 for i in range(PER_CLIENT.amount)]
        assert post_at_once(sweep).count(401) == PER_CLIENT.amount
        refused = login(world, "viewer", PASSWORDS["viewer"], ATTACKER)
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
        for role in ("admin", "viewer", "contributor"):
            assert login(world, role, PASSWORDS[role], ADMIN_DESK).status_code == 303, role


def test_five_wrong_passwords_lock_the_account_from_that_client(site: AppWorld) -> None:
    client = site.web()
    for _ in range(PER_ACCOUNT.amount):
        assert client.login("contributor", wrong()).status_code == 401
    locked = client.login("contributor", PASSWORDS["contributor"])
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    assert SESSION_COOKIE not in client.http.cookies
    # Another name from the same address is not locked out by this one's failures.
    assert client.login("viewer", PASSWORDS["viewer"]).status_code == 303


def test_a_right_password_clears_the_count(site: AppWorld) -> None:
    client = site.web()
    for _ in range(PER_ACCOUNT.amount - 1):
        assert client.login("viewer", wrong()).status_code == 401
    assert client.login("viewer", PASSWORDS["viewer"]).status_code == 303
    other = site.web()
    for _ in range(PER_ACCOUNT.amount - 1):
        assert other.login("viewer", wrong()).status_code == 401
    assert other.login("viewer", PASSWORDS["viewer"]).status_code == 303


def test_accounts_are_counted_case_blind_per_client() -> None:
    throttle = SignInThrottle()
    for _ in range(PER_ACCOUNT.amount):
        throttle.attempt("Admin ", "10.0.0.1")
    with pytest.raises(TooManyAttemptsError) as refused:
        throttle.attempt("admin", "10.0.0.1")
    assert 0 < (refused.value.retry_after or 0) <= 15 * 60
    assert throttle.wait_seconds("admin", "10.0.0.1") > 0
    # The same account from another client, and another account from this one, go on.
    throttle.attempt("admin", "10.0.0.2").succeeded()
    throttle.attempt("someone", "10.0.0.1").succeeded()


def test_right_passwords_do_not_use_up_the_clients_budget() -> None:
    throttle = SignInThrottle()
    for i in range(PER_CLIENT.amount * 2):  # an office signing in through one address
        throttle.attempt(f"colleague-{i}", "10.0.0.9").succeeded()
    for i in range(PER_CLIENT.amount):
        throttle.attempt(f"typo-{i}", "10.0.0.9")
    with pytest.raises(TooManyAttemptsError):
        throttle.attempt("anyone", "10.0.0.9")


def test_ipv6_clients_count_by_their_64_network() -> None:
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == (
        "2001:db8:1:2::/64")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "unknown"
    assert client_key("not an address").startswith("other:")


@pytest.mark.redis
def test_web_processes_sharing_redis_share_the_count() -> None:
    require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    name = "user-" + uuid.uuid4().hex
    first, second = SignInThrottle(REDIS_URL), SignInThrottle(REDIS_URL)
    for _ in range(PER_ACCOUNT.amount):
        first.attempt(name, "10.1.1.1")
    with pytest.raises(TooManyAttemptsError):
        second.attempt(name, "10.1.1.1")
    assert second.wait_seconds(name, "10.1.1.9") == 0


# -- X-Forwarded-For: only from the configured proxies -----------------------------------


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        tmp_path: Path, hasher: CountingHasher) -> None:
    # The peer (127.0.0.1) is not a trusted proxy: naming a new address in every request
    # does not make a new client. Unset, and set to another proxy's address, alike.
    for number, trusted in enumerate(("", "10.9.9.9")):
        with world_with(tmp_path / str(number), trusted_proxies=trusted) as world:
            hasher.verified = 0
            statuses = [login(world, f"name-{i}", wrong(), f"192.0.2.{i}").status_code
                        for i in range(PER_CLIENT.amount + 1)]
            assert statuses == [401] * PER_CLIENT.amount + [429], trusted
            assert hasher.verified == PER_CLIENT.amount


def test_addresses_a_client_adds_before_the_trusted_proxys_are_ignored(tmp_path: Path) -> None:
    with world_with(tmp_path, trusted_proxies="127.0.0.1") as world:
        # The proxy appends the address it saw; what the client wrote to its left is noise.
        statuses = [login(world, "admin", wrong(), f"192.0.2.{i}, {ATTACKER}").status_code
                    for i in range(PER_ACCOUNT.amount + 1)]
        assert statuses == [401] * PER_ACCOUNT.amount + [429]
        assert login(world, "admin", PASSWORDS["admin"], ADMIN_DESK).status_code == 303


def test_the_server_believes_forwarded_headers_only_from_the_setting(tmp_path: Path) -> None:
    with world_with(tmp_path) as world:
        assert trusted_proxies(world.server.app) == []
        config = _config(world.server.app)
        # uvicorn on its own would believe 127.0.0.1 (or FORWARDED_ALLOW_IPS).
        assert config.proxy_headers is False
    with world_with(tmp_path / "behind", trusted_proxies=shipped_trusted_proxies()) as world:
        config = _config(world.server.app)
        assert config.proxy_headers is True
        assert config.forwarded_allow_ips == ["127.0.0.1/32", "::1/128"]


def test_the_trusted_proxies_setting_takes_addresses_and_networks_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, trusted_proxies=" 10.0.0.0/8, ::1,192.0.2.1 ")
    assert settings.trusted_proxy_list == ["10.0.0.0/8", "::1/128", "192.0.2.1/32"]
    for bad in ("*", "proxy.example.com", "10.0.0.0/33"):
        with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES"):
            make_settings(tmp_path, trusted_proxies=bad)


# -- the counts' store down ----------------------------------------------------------------


@pytest.mark.redis
def test_with_redis_down_no_password_is_checked_and_sign_in_answers_503(
        tmp_path: Path, hasher: CountingHasher) -> None:
    require(shutil.which("redis-server") is not None, "redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if port_open("127.0.0.1", port):
                break
            time.sleep(0.05)
        with world_with(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0",
                        queue_name="t-" + uuid.uuid4().hex) as world:
            assert login(world, "admin", PASSWORDS["admin"]).status_code == 303
            web = world.browser("admin")
            redis.terminate()
            redis.wait(10)
            hasher.verified = 0
            refused = login(world, "admin", PASSWORDS["admin"])
            assert refused.status_code == 503, refused.text[:300]
            assert "cannot be reached" in refused.text
            # Asking for the password again (a new API token) fails closed the same way.
            again = web.post("/account/tokens", data={"name": "t",
                                                      "password": PASSWORDS["admin"]})
            assert again.status_code == 503, again.text[:300]
            assert "cannot be reached" in again.text
            assert hasher.verified == 0  # nothing was checked uncounted
    finally:
        redis.kill()
        redis.wait(10)
