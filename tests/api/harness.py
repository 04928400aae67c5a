"""The app over real HTTP on 127.0.0.1 with a user of each role, for the API, page and
browser tests: API clients with Bearer tokens, browser-like clients with a session cookie."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from segment_export.api.auth import SESSION_COOKIE, start_web_session
from segment_export.api.server import AppServer
from segment_export.app import create_app
from segment_export.config import Settings, load_settings
from segment_export.db import make_engine, upgrade_database
from segment_export.db.models import Connection, Export, Run, Segment, User
from segment_export.definitions.connections import ConnectionSpec, create_connection
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.profiles import DuckDBProfileStore, generate_profiles
from segment_export.profiles.imports import ProfileImport
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime
from segment_export.segments.service import SegmentSpec, create_segment
from segment_export.users import Role, UserSpec, create_api_token, create_user, hash_password

ROLES = ("viewer", "contributor", "admin")
PASSWORDS = {"admin": "admin-password-0001", "contributor": "contributor-password-2",
             "viewer": "viewer-password-003"}
LIST_ID = "1b2e3c4d-0000-1111-2222-333344445555"
_HASHES: dict[str, str] = {}


def password_hash(role: str) -> str:
    """The argon2 hash of ``role``'s password, made once per test process (it takes ~0.2 s)."""
    if role not in _HASHES:
        _HASHES[role] = hash_password(PASSWORDS[role])
    return _HASHES[role]


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings of an isolated installation in ``data_dir``."""
    return load_settings(data_dir=data_dir, secret_key=Fernet.generate_key().decode(),
                         log_level="DEBUG", **overrides)


class WebClient:
    """A browser stand-in: keeps cookies, sends the session's CSRF token with every form."""

    def __init__(self, base_url: str, *, csrf: str = "") -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        self.csrf = csrf

    def set_session(self, cookie: str) -> None:
        """Present ``cookie`` as the session, as if the server had set it."""
        host = httpx.URL(str(self.http.base_url)).host
        self.http.cookies.set(SESSION_COOKIE, cookie, domain=host, path="/")

    @property
    def session_cookie(self) -> str | None:
        return next((c.value for c in self.http.cookies.jar if c.name == SESSION_COOKIE), None)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(path, **kwargs)
        found = CSRF_META.search(response.text) if response.headers.get(
            "content-type", "").startswith("text/html") else None
        if found and found.group(1):
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
             **kwargs: Any) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return self.http.post(path, data=form, **kwargs)

    def login(self, username: str, password: str, *, next_url: str = "/") -> httpx.Response:
        """Sign in through the real form (with its double-submit token)."""
        page = self.http.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token is not None, page.text
        response = self.http.post("/login", data={
            "username": username, "password": password, "login_csrf": token.group(1),
            "next": next_url})
        if response.status_code == 303:
            # Following it picks up the new session's CSRF token from the page.
            self.get(response.headers["location"], follow_redirects=True)
        return response

    def close(self) -> None:
        self.http.close()


@dataclass
class AppWorld:
    """A running installation: settings, runtime, the app on a port, and one user per role."""

    settings: Settings
    runtime: Runtime
    server: AppServer
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    _clients: list[httpx.Client | WebClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    def api(self, role: str | None) -> httpx.Client:
        """An API client sending ``role``'s Bearer token (None: anonymous)."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        self._clients.append(client)
        return client

    def web(self) -> WebClient:
        """An anonymous browser stand-in (closed with the world)."""
        client = WebClient(self.url)
        self._clients.append(client)
        return client

    def browser(self, role: str | None) -> WebClient:
        """A client already signed in as ``role`` (a session made directly: no password hash
        to verify, so hundreds of them stay fast), or anonymous."""
        client = WebClient(self.url)
        if role is not None:
            with self.runtime.sessions.begin() as db:
                cookie, web_session = start_web_session(db, user=db.merge(self.users[role]),
                                                        settings=self.settings)
                client.csrf = web_session.csrf_token
            client.set_session(cookie)
        self._clients.append(client)
        return client

    # -- fresh objects, so that one test's change never bleeds into another's --------------

    def user(self, role: Role = Role.VIEWER) -> User:
        with self.runtime.sessions.begin() as db:
            return create_user(
                db, spec=UserSpec(username=f"u-{secrets.token_hex(4)}", role=role), actor=None
            )

    def token_of(self, role: str) -> str:
        """The id of a new API token of ``role``'s user."""
        with self.runtime.sessions.begin() as db:
            owner = db.merge(self.users[role])
            return create_api_token(db, actor=owner, user=owner, name="t").token.id

    def connection(self, *, shared: bool = True) -> Connection:
        """A saved (not yet authorized) connection."""
        with self.runtime.sessions.begin() as db:
            return create_connection(db, actor=db.merge(self.users["admin"]), spec=ConnectionSpec(
                display_name=f"Conn {secrets.token_hex(4)}", client_id="client-" +
                secrets.token_hex(4), client_secret="secret-" + secrets.token_hex(8),
                consent=True, shared_with_contributors=shared,
                redirect_uri=self.url + "/admin/connections/callback"))

    def segment(self, expression: str = "country = 'DE'") -> Segment:
        with self.runtime.sessions.begin() as db:
            return create_segment(
                db,
                self.runtime.store,
                spec=SegmentSpec(name=f"Seg {secrets.token_hex(4)}", expression=expression),
            )

    def export(self, *, connection: Connection | None = None,
               segment: Segment | None = None) -> Export:
        connection = connection or self.connection()
        segment = segment or self.segment()
        with self.runtime.sessions.begin() as db:
            return create_export(db, actor=db.merge(self.users["admin"]), spec=ExportSpec(
                name=f"Export {secrets.token_hex(4)}", connection_id=connection.id,
                list_id=LIST_ID, list_name="Newsletter", mapping={"email": "email"},
                segment_ids=[segment.id]))

    def run(self, export: Export | None = None) -> Run:
        """A queued run (nobody executes it: this world's queue has no worker)."""
        export = export or self.export()
        with self.runtime.sessions.begin() as db:
            run = Run(export_id=export.id, requested_by_id=self.users["admin"].id)
            db.add(run)
            db.flush()
            return run

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def app_world(config: Settings, *, engine: Engine | None = None, profiles: int = 300,
              immediate_queue: bool = False, start_worker: bool = False) -> Iterator[AppWorld]:
    """An installation with profiles and a user (password and API token) of each role."""
    if engine is None:
        engine = make_engine(config)
        upgrade_database(engine)
    store = DuckDBProfileStore(config.profiles_path)
    if profiles:
        store.import_table(generate_profiles(rows=profiles, seed=3),
                           ProfileImport(id_column="customer_id"))
    runtime = Runtime(config, engine=engine, store=store)
    queue = TaskQueue(runtime, immediate=immediate_queue)
    app = create_app(config, runtime=runtime, queue=queue, start_worker=start_worker,
                     worker_threads=2)
    world = AppWorld(config, runtime, AppServer(app))
    with runtime.sessions.begin() as db:
        for role in ROLES:
            user = create_user(db, spec=UserSpec(username=role, role=Role(role)), actor=None)
            user.password_hash = password_hash(role)
            world.users[role] = user
            world.tokens[role] = create_api_token(db, actor=user, user=user,
                                                  name="tests").secret
    world.server.start()
    try:
        yield world
    finally:
        world.close()
        world.server.stop()
        store.close()
