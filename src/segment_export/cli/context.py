"""What every command shares: settings, logging and the state store, built on first use."""

from __future__ import annotations

import signal
import threading
from functools import cached_property

import click
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from segment_export import languages
from segment_export.config import Settings, load_settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from segment_export.db.models import User
from segment_export.log import configure_logging
from segment_export.metrics import Metrics
from segment_export.profiles import ProfileStore
from segment_export.profiles.engines import open_profile_store
from segment_export.scheduling.runtime import Runtime
from segment_export.users import ensure_admin, get_user


class AppContext:
    """Lazily built so that `--help` works without a data directory or database."""

    def __init__(self, username: str | None = None, language: str | None = None) -> None:
        self.username = username
        self.language_option = language

    @cached_property
    def language(self) -> str:
        """Messages and reports: --lang, else the --as-user user's setting, else
        SEGMENT_EXPORT_LANGUAGE / LC_ALL / LC_MESSAGES / LANG, else English."""
        chosen = languages.normalize(self.language_option)
        if chosen:
            return chosen
        setting = None
        if self.username:
            with self.sessions() as session:
                setting = session.scalar(select(User.language).where(
                    User.username == self.username))
        return languages.choose(setting, languages.from_environment())

    def t(self, message: str, /, **variables: object) -> str:
        """``message`` (a catalogue msgid) in the CLI's language, ``%(name)s`` filled in."""
        if not message:  # gettext("") is the catalogue's header
            return message
        text = languages.translations(self.language).gettext(message)
        return text % languages.filled(variables, self.language) if variables else text

    def number(self, value: object) -> str:
        return languages.number(value, self.language)

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        return settings

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings)
        upgrade_database(engine)  # migrations are applied on start
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def store(self) -> ProfileStore:
        return open_profile_store(self.settings)

    def actor(self, session: Session) -> User:
        """The user the command acts as: --as-user, else the first admin (made on first use)."""
        if self.username:
            return get_user(session, username=self.username)
        admin = ensure_admin(session)
        session.commit()
        return admin

    @cached_property
    def metrics(self) -> Metrics:
        """The command's metrics, with the process_* and python_* series: one command is one
        process, and `serve` and `worker` serve these (the web app at /metrics)."""
        return Metrics.for_process()

    def runtime(self) -> Runtime:
        return Runtime(self.settings, engine=self.engine, store=self.store, metrics=self.metrics)

    def stop_on_sigterm(self) -> threading.Event:
        """From now on SIGTERM stops runs of this process at their next batch boundary (they
        go back to the queue) instead of killing it mid-batch."""
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        return stopping


pass_app = click.make_pass_decorator(AppContext)
