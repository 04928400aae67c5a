"""Starting Spark for the profile store, and reading the ``spark:...`` setting."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from segment_export.errors import ConfigurationError
from segment_export.languages import N_

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PARQUET = "parquet:"
OPTIONS = ("id_column", "members", "master", "driver_memory")
LOCAL_MASTER = "local[2]"

# Spark's own console logging is loud (WARN, JSON); a store only needs to hear about errors.
# A task failing on a bad segment condition reaches the caller as an exception (a DataError),
# so the executor's own report of it is silenced.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex{short}
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = fatal
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = fatal
"""


def parse_setting(setting: str) -> tuple[str, dict[str, str]]:
    """``spark:<table>[?option=value&...]`` -> (table or ``parquet:<path>``, options).

    The table is a catalog table name (``lake.crm.profiles``) as the Spark session's catalogs
    resolve it, or ``parquet:<directory>`` for a Parquet directory.
    """
    value = setting.strip()
    scheme, _, rest = value.partition(":")
    if scheme.lower() != "spark" or not rest:
        raise ConfigurationError(
            N_("SEGMENT_EXPORT_PROFILE_STORE=%(setting)s is not a Spark table; use "
               "spark:<catalog table> or spark:parquet:<directory>, optionally followed by "
               "?id_column=NAME"),
            values={"setting": repr(setting)}
        )
    source, _, query = rest.partition("?")
    source = source.strip()
    options: dict[str, str] = {}
    for key, option in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in OPTIONS:
            raise ConfigurationError(
                N_("SEGMENT_EXPORT_PROFILE_STORE: unknown Spark option %(key)s; known options: "
                   "%(options)s"),
                values={"key": repr(key), "options": ', '.join(OPTIONS)}
            )
        if not option.strip():
            raise ConfigurationError(N_("SEGMENT_EXPORT_PROFILE_STORE: option %(key)s is empty"),
                                     values={"key": repr(key)})
        options[key] = option.strip()
    if source.lower().startswith(PARQUET):
        path = source[len(PARQUET):].strip()
        if not path:
            raise ConfigurationError(
                N_("SEGMENT_EXPORT_PROFILE_STORE: spark:parquet: needs a directory, like "
                   "spark:parquet:/lake/profiles")
            )
        return PARQUET + path, options
    if not source:
        raise ConfigurationError(
            N_("SEGMENT_EXPORT_PROFILE_STORE: spark: needs a table, like spark:lake.profiles or "
               "spark:parquet:/lake/profiles")
        )
    return source, options


def spark_running() -> bool:
    """Whether this process already runs Spark (started by anyone, from any thread)."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def local_session(
    work_dir: Path, *, master: str = LOCAL_MASTER, driver_memory: str = "1g",
    java_options: str = "",
) -> SparkSession:
    """A Spark session for this process (the active one, else one started with our settings).

    A local-mode session binds only 127.0.0.1, runs without the web UI, keeps its warehouse and
    scratch files under ``work_dir``, uses few shuffle partitions and little memory, and logs
    only errors. A session that already exists (spark-submit, a notebook) is used as it is.
    ``java_options`` go to the driver JVM as they are (short-lived sessions start faster with
    ``-XX:TieredStopAtLevel=1``, say).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            N_("The Spark profile store needs PySpark: pip install 'segment-export[spark]'")
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ConfigurationError(
            N_("The Spark profile store needs Java 17 or newer, and no java is on the PATH"),
            hint=N_("Install a JRE (Debian: apt-get install default-jre-headless) or set "
                    "JAVA_HOME."),
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    log_config = work_dir / "log4j2.properties"
    log_config.write_text(_LOG4J2, encoding="utf-8")
    builder = SparkSession.builder.appName("segment-export").master(master)
    jvm = [f"-Dlog4j2.configurationFile={log_config.resolve().as_uri()}"]
    if master.startswith("local"):
        # Local mode must not reach the network: every socket binds the loopback interface
        # (the JVM reads SPARK_LOCAL_IP from the environment it is started with).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        jvm.append("-Duser.timezone=UTC")
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.memory", driver_memory)
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.default.parallelism", "2")
            .config("spark.local.dir", str((work_dir / "tmp").resolve()))
        )
    builder = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", " ".join([*jvm, java_options]).strip())
        .config("spark.sql.warehouse.dir", str((work_dir / "warehouse").resolve()))
        .config("spark.sql.session.timeZone", "UTC")
    )
    try:
        with warnings.catch_warnings():
            # PySpark checks the pandas version on start and warns about pandas 3, which only
            # its pandas API uses; the store exchanges Arrow.
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support",
                                    category=FutureWarning)
            session = builder.getOrCreate()
    except Exception as exc:
        raise ConfigurationError(
            N_("Spark could not start: %(error)s"),
            values={"error": _first_line(exc)},
            hint=N_("Spark 4 needs Java 17 or newer; check `java -version` and the master URL."),
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    return session


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
