"""Settings from SEGMENT_EXPORT_* environment variables (and an optional .env file)."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from segment_export.errors import ConfigurationError
from segment_export.languages import N_

# Values people paste from examples; encrypting with them would protect nothing.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "placeholder", "xxx", "todo", "your-secret-key"}
)
SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


class Settings(BaseSettings):
    """Every setting of the product. Each field is ``SEGMENT_EXPORT_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="SEGMENT_EXPORT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path(".segment-export"),
        description="Where the state database, profile store, key file and reports live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state database; default: SQLite file in the data "
        "directory. PostgreSQL: postgresql+psycopg://user@host/db.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) that encrypt secrets at rest, comma-separated, newest first "
        "(older keys only decrypt, for rotation). Generated into <data_dir>/secret.key when unset.",
    )
    cc_api_url: str = Field(
        default="https://api.cc.email/v3",
        description="Base URL of the Constant Contact V3 API (or the bundled emulator).",
    )
    cc_auth_url: str = Field(
        default="https://authz.constantcontact.com/oauth2/default/v1",
        description="Base URL of Constant Contact's OAuth 2 authorization server.",
    )
    cc_requests_per_second: float = Field(
        default=4.0, gt=0, description="Request pace per API key (partner keys may use 10)."
    )
    cc_daily_quota: int = Field(
        default=10_000, gt=0, description="Requests per API key per UTC day."
    )
    import_batch_contacts: int = Field(
        default=40_000, gt=0, le=40_000,
        description="Contacts per import request (Constant Contact allows 40,000 and 4 MB; "
        "requests are also kept under 4 MB).",
    )
    max_contacts_per_export: int = Field(
        default=1_000_000, gt=0, description="A run over this many contacts is skipped unsent."
    )
    profile_store: str = Field(
        default="duckdb",
        description="Where the profiles live: duckdb (the embedded store in the data "
        "directory), a PostgreSQL URL (postgresql://user@host/db, optionally "
        "?schema=NAME&table=NAME), or spark:<table> / spark:parquet:<directory> for a "
        "lakehouse table read through Spark (PySpark; local mode unless ?master= names a "
        "cluster).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0): when set, jobs go through Redis to any "
        "number of workers and every worker shares one rate budget per API key.",
    )
    queue_name: str = Field(
        default="segment-export", min_length=1, pattern=r"^[A-Za-z0-9._:-]+$",
        description="Name of the task queue in Redis: deployments sharing one Redis server use "
        "different names (the rate budget per API key stays shared between them).",
    )
    worker_threads: int = Field(
        default=2, gt=0, description="Runs one worker process executes at the same time."
    )
    stale_run_seconds: int = Field(
        default=120, gt=0,
        description="A running run whose worker sent no heartbeat for this long is resumed.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of log record written."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text or as JSON objects."
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="Password given to the first admin on the first start of the web app "
        "(`serve`); when unset, one is generated and printed once.",
    )
    public_url: str | None = Field(
        default=None,
        description="The web app's public base URL (https://exports.example.com). OAuth "
        "redirect URIs are built from it, and an https URL makes session cookies Secure.",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a web sign-in lasts."
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses or networks of the reverse proxies in front of the web app, "
        "comma-separated (127.0.0.1,::1 or 10.0.0.0/8). Only requests from these have their "
        "X-Forwarded-For (the right-most address not in this list is the client) and "
        "X-Forwarded-Proto believed; empty: the connecting address is the client.",
    )
    retention_days: int = Field(
        default=14, ge=1,
        description="Days the rejected rows of a run and its batch details are kept after the "
        "run ends; `purge` deletes older ones (run summaries and counts are kept).",
    )
    metrics_listen: str | None = Field(
        default=None,
        description="host:port where `worker` serves Prometheus metrics (e.g. 127.0.0.1:9464); "
        "the web app serves them at /metrics itself.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a scraper must send to /metrics (web app and worker); when "
        "unset, metrics are served only to clients on the loopback address.",
    )
    # Email alerts (docs/alerts.md): unset host = no email, the webhook alone.
    smtp_host: str | None = Field(
        default=None,
        description="Mail server that email alerts are sent through (smtp.example.com); unset: "
        "no email alerts.",
    )
    smtp_port: int | None = Field(
        default=None, gt=0, lt=65536,
        description="Port of the mail server; default 587 for starttls, 465 for ssl, 25 for none.",
    )
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls (upgrade to TLS before anything is sent, refused if the server "
        "does not offer it), ssl (TLS from the first byte) or none (clear text; with "
        "credentials only to a loopback host). The server's certificate is always verified.",
    )
    smtp_username: str | None = Field(
        default=None, description="User name for SMTP AUTH; unset: no AUTH."
    )
    smtp_password: SecretStr | None = Field(
        default=None, description="Password for SMTP AUTH (with SMTP_USERNAME)."
    )
    smtp_from: str | None = Field(
        default=None,
        description="From address of alert emails (alerts@example.com); required with SMTP_HOST.",
    )
    alert_language: Literal["en", "ms"] = Field(
        default="en",
        description="Language of alert emails to an address that is no user's, or whose user "
        "chose no language (a user's own setting wins).",
    )
    smtp_timeout: float = Field(
        default=10.0, gt=0, le=120,
        description="Seconds each step of talking to the mail server may take, and the longest "
        "a finishing run waits for its alert email (the rest is sent in the background).",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that sign a private relay's certificate, trusted "
        "instead of the system's CAs; unset: the system's CAs.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("secret_key")
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for key in value.get_secret_value().split(","):
            if key.strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    "SEGMENT_EXPORT_SECRET_KEY holds a placeholder; set a real key made with "
                    "`segment-export secrets generate-key`, or unset it to have one generated"
                )
            try:
                Fernet(key.strip().encode())
            except ValueError as exc:
                raise ValueError(
                    "SEGMENT_EXPORT_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes)"
                ) from exc
        return value

    @field_validator("metrics_token")
    @classmethod
    def _refuse_placeholder_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("SEGMENT_EXPORT_METRICS_TOKEN holds a placeholder; set a long random "
                             "value (e.g. `openssl rand -hex 32`), or unset it to serve metrics "
                             "to loopback clients only")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        networks = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                # "*" included: trusting everyone lets any client name its own address.
                raise ValueError(
                    f"SEGMENT_EXPORT_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                    "(e.g. 127.0.0.1, ::1, 10.0.0.0/8)") from None
        return ",".join(networks)

    @model_validator(mode="after")
    def _smtp_consistent(self) -> Settings:
        if self.smtp_host is None:
            return self
        if not self.smtp_from or "@" not in self.smtp_from:
            raise ValueError("SEGMENT_EXPORT_SMTP_FROM must be an email address when "
                             "SEGMENT_EXPORT_SMTP_HOST is set")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SEGMENT_EXPORT_SMTP_USERNAME and SEGMENT_EXPORT_SMTP_PASSWORD go "
                             "together: set both for SMTP AUTH, or neither")
        if self.smtp_security == "none" and self.smtp_username and not _loopback(self.smtp_host):
            raise ValueError("SEGMENT_EXPORT_SMTP_SECURITY=none would send the SMTP password in "
                             f"clear text to {self.smtp_host}; use starttls or ssl (clear text "
                             "with credentials is allowed only to a loopback host)")
        return self

    @property
    def trusted_proxy_list(self) -> list[str]:
        """SEGMENT_EXPORT_TRUSTED_PROXIES as networks (empty: no proxy is trusted)."""
        return self.trusted_proxies.split(",") if self.trusted_proxies else []

    @property
    def resolved_database_url(self) -> str:
        """The state database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'state.db').resolve()}"

    @property
    def profiles_path(self) -> Path:
        """The embedded DuckDB profile store."""
        return self.data_dir / "profiles.duckdb"

    def ensure_data_dir(self) -> Path:
        """Create the data directory (owner-only) if needed and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir

    @cached_property
    def encryption_keys(self) -> list[bytes]:
        """Keys for secrets at rest, newest first; generated and stored 0600 on first use."""
        if self.secret_key is not None:
            return [k.strip().encode() for k in self.secret_key.get_secret_value().split(",")]
        key_file = self.ensure_data_dir() / SECRET_KEY_FILE
        if not key_file.exists():
            key = Fernet.generate_key()
            # O_EXCL: two processes starting at once must not each write a different key.
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(key + b"\n")
        keys = [k.strip() for k in key_file.read_bytes().split(b"\n") if k.strip()]
        if not keys:
            raise ConfigurationError(N_("The key file %(key_file)s is empty"),
                                     values={"key_file": key_file}, path=str(key_file))
        return keys


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (localhost, 127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides (used by tests and CLI)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(N_("Invalid settings: %(error)s"),
                                 values={"error": exc}) from exc
