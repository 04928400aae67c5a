"""What a worker process needs to execute runs: settings, state store, profile store, metrics."""

from __future__ import annotations

from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from segment_export.exports.dependencies import RunDependencies
from segment_export.metrics import Metrics
from segment_export.profiles import ProfileStore
from segment_export.profiles.engines import open_profile_store


class Runtime:
    """Built lazily, once per process, and shared by its worker threads.

    ``metrics`` is where everything run through this runtime records (left out: metrics of
    its own, so two runtimes in one process never mix their series).
    """

    def __init__(self, settings: Settings, *, engine: Engine | None = None,
                 store: ProfileStore | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self._engine = engine
        self._store = store

    @cached_property
    def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        engine = make_engine(self.settings)
        upgrade_database(engine)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def store(self) -> ProfileStore:
        return self._store or open_profile_store(self.settings)

    def deps(self) -> RunDependencies:
        return RunDependencies(settings=self.settings, engine=self.engine,
                               sessions=self.sessions, store=self.store, metrics=self.metrics)
