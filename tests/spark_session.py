"""One local Spark session for the whole test run: a JVM takes seconds to start."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.services import require

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def shared_session(work_dir: Path) -> SparkSession:
    """The process's Spark session, started in local mode (127.0.0.1 only, no UI, UTC) by the
    first caller; skipped without Java on a laptop, a failure in CI."""
    require(shutil.which("java") is not None, "Java 17+ (for Spark)")
    from segment_export.profiles.spark import local_session

    # The client compiler only: a test run's JVM lives a minute, and C2's warm-up would cost
    # more than it gains (about half the time of the first queries on two cores).
    return local_session(work_dir, driver_memory="512m",
                         java_options="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """The shared session, stopped when the run ends."""
    session = shared_session(tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()
