"""ORM models of the state store. Schemas exchanged with users live beside their services."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from segment_export.db.types import EncryptedString, UTCDateTime, utcnow

# Deterministic constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))  # admin | contributor | viewer
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Interface language (en | ms); None = not chosen (browser or environment decides).
    language: Mapped[str | None] = mapped_column(String(10))


class Connection(Base):
    """A Constant Contact account reached over OAuth, with its grant encrypted at rest."""

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    display_name: Mapped[str] = mapped_column(String(200), unique=True)
    shared_with_contributors: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending (no grant yet) | connected | reauthorization_needed
    status: Mapped[str] = mapped_column(String(40), default="pending")
    client_id: Mapped[str] = mapped_column(EncryptedString)
    client_secret: Mapped[str | None] = mapped_column(EncryptedString)
    redirect_uri: Mapped[str | None] = mapped_column(String(500))
    # Rate limits count per API key; this hash names the key without revealing it.
    api_key_hash: Mapped[str] = mapped_column(String(64), index=True)
    access_token: Mapped[str | None] = mapped_column(EncryptedString)
    refresh_token: Mapped[str | None] = mapped_column(EncryptedString)
    token_expires_at: Mapped[datetime | None]
    scope: Mapped[str | None] = mapped_column(String(200))
    # Bumped on every token write, so a refresh can tell whether another one won the race.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    oauth_state: Mapped[str | None] = mapped_column(String(128))
    pkce_verifier: Mapped[str | None] = mapped_column(EncryptedString)
    account_name: Mapped[str | None] = mapped_column(String(200))
    account_email: Mapped[str | None] = mapped_column(String(255))
    consent_text_version: Mapped[str | None] = mapped_column(String(40))
    consent_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    consent_at: Mapped[datetime | None]
    export_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Whether the account takes SMS-only contacts (no email): the API cannot tell, so an admin
    # says so; off, an export's SMS-only members are refused (``sms_not_allowed``).
    sms_only_allowed: Mapped[bool] = mapped_column(Boolean, default=False,
                                                   server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Suppression(Base):
    """A contact Constant Contact shows unsubscribed, per connection (an unsubscribe is
    account-wide): never sent again by any export over the connection.

    Kept as the SHA-256 of the trimmed, lower-cased email, not the email: matching needs no
    more, and the state store then holds no address of a person who asked to hear nothing.
    """

    __tablename__ = "suppressions"

    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # How it was learnt: ``unsubscribed`` = read from the account's unsubscribed contacts.
    source: Mapped[str] = mapped_column(String(20))
    # Constant Contact's opt_out_source (Contact: the person; Account: a user of the account).
    opt_out_source: Mapped[str | None] = mapped_column(String(20))
    opted_out_at: Mapped[datetime | None]
    learnt_at: Mapped[datetime] = mapped_column(default=utcnow)


class SuppressionSync(Base):
    """Where the reading of a connection's unsubscribes stands: its watermark and last sync."""

    __tablename__ = "suppression_syncs"

    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True)
    # The latest opt-out date read so far: the next read asks only from (a little before) it.
    watermark: Mapped[datetime | None]
    synced_at: Mapped[datetime | None]
    full_synced_at: Mapped[datetime | None]
    # What the last sync did: {"read": n, "added": n, "lifted": n, "requests": n}.
    last_result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Segment(Base):
    """A named rule set over profile columns; membership itself lives in the profile store."""

    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[dict[str, Any] | None]  # the rule tree (JSON), or None when `expression` is used
    expression: Mapped[str | None] = mapped_column(Text)  # restricted SQL boolean expression
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    refreshed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SegmentSize(Base):
    """One point of a segment's size history, written by every refresh."""

    __tablename__ = "segment_sizes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"))
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
    size: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_segment_sizes_segment_time", "segment_id", "refreshed_at"),)


class Export(Base):
    """A destination: which segments go to which Constant Contact list, mapped how, and when."""

    __tablename__ = "exports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # NULL once detached from a removed connection: kept, but cannot run until re-attached.
    connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("connections.id", ondelete="SET NULL")
    )
    list_id: Mapped[str] = mapped_column(String(36))
    list_name: Mapped[str | None] = mapped_column(String(255))
    mapping: Mapped[dict[str, Any]]  # Constant Contact field -> profile column
    segment_ids: Mapped[list[Any]]
    consent_field: Mapped[str | None] = mapped_column(String(200))
    # Where a phone number without a country code is taken to be (ISO 3166 alpha-2).
    phone_region: Mapped[str] = mapped_column(String(2), default="US", server_default="US")
    mode: Mapped[str] = mapped_column(String(20), default="add_update")  # add_update | mirror
    schedule_kind: Mapped[str] = mapped_column(String(20), default="manual")  # manual|refresh|cron
    cron: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_contacts: Mapped[int | None] = mapped_column(BigInteger)
    rejected_alert_threshold: Mapped[float | None] = mapped_column(Float)
    next_run_at: Mapped[datetime | None]
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExportMember(Base):
    """What this export last delivered for one email: the diff base for incremental runs.

    Keys and value hashes are 64-bit integers so a run can hold a million of them in numpy
    arrays (16 bytes a member) instead of a million Python strings.
    """

    __tablename__ = "export_members"

    export_id: Mapped[str] = mapped_column(
        ForeignKey("exports.id", ondelete="CASCADE"), primary_key=True
    )
    email_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    values_hash: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str | None] = mapped_column(String(36))

    # Covers the diff's read (export, key, hash) so it never touches the wide rows.
    __table_args__ = (
        Index("ix_export_members_diff", "export_id", "email_key", "values_hash"),
    )


class ExportMemberBlock(Base):
    """What one confirmed batch delivered, or one removal took off the list, in one packed row.

    The export's delivered state is its ``export_members`` rows overlaid with its blocks, oldest
    first (see exports/delivery.py). A million members cost one row per batch to record rather
    than a million B-tree upserts, and the diff reads them back as arrays.
    """

    __tablename__ = "export_member_blocks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    export_id: Mapped[str] = mapped_column(
        ForeignKey("exports.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(10))  # delivered | removed
    members: Mapped[int] = mapped_column(Integer)
    # Little-endian int64 arrays (email keys, value hashes) and an Arrow IPC stream of emails.
    keys: Mapped[bytes] = mapped_column(LargeBinary)
    hashes: Mapped[bytes | None] = mapped_column(LargeBinary)
    emails: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExportContactIds(Base):
    """Constant Contact contact ids the export learnt for its members, one packed row per time
    it learnt some (see exports/contact_ids.py): a mirror run looks its leavers' ids up here
    instead of downloading the list. Rows of one export overlay oldest first, per email key.
    """

    __tablename__ = "export_contact_ids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    export_id: Mapped[str] = mapped_column(
        ForeignKey("exports.id", ondelete="CASCADE"), index=True
    )
    # The list the ids were seen on: ids learnt on another list are never used.
    list_id: Mapped[str] = mapped_column(String(36))
    members: Mapped[int] = mapped_column(Integer)
    # Little-endian int64 email keys, and per key the contact id's 16 UUID bytes (all zero:
    # the key's id is forgotten).
    keys: Mapped[bytes] = mapped_column(LargeBinary)
    contact_ids: Mapped[bytes] = mapped_column(LargeBinary)
    # When the ids were seen: just before the list's contact export that showed them was asked
    # for (a fold keeps its blocks' oldest). A contact updated since may have another address
    # under the same id. NULL (blocks kept before 0012, forgotten ids): not used.
    learnt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


ONE_ACTIVE_RUN = "status IN ('queued', 'running', 'paused') AND NOT dry_run"
UNSETTLED_BATCH = "state IN ('sent', 'pending')"


class Run(Base):
    """One execution (or dry run) of an export, with counts that add up."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    export_id: Mapped[str] = mapped_column(
        ForeignKey("exports.id", ondelete="CASCADE"), index=True
    )
    # queued | running | succeeded | succeeded_with_rejections | failed | cancelled | skipped
    status: Mapped[str] = mapped_column(String(40), default="queued", index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    full_resync: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger: Mapped[str] = mapped_column(String(20), default="manual")  # manual|schedule|refresh
    requested_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(120))
    heartbeat_at: Mapped[datetime | None]
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stage_seconds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    # The same message as catalogue msgids and values (languages.Text.as_json), so pages and
    # the CLI can show it in the reader's language; ``message`` stays English for the API.
    message_text: Mapped[dict[str, Any] | None]
    error_kind: Mapped[str | None] = mapped_column(String(60))

    __table_args__ = (
        # One active real run per export, enforced by the database: a manual run and the
        # scheduler's tick requested at the same moment cannot both start one.
        Index("uq_runs_one_active_per_export", "export_id", unique=True,
              sqlite_where=text(ONE_ACTIVE_RUN), postgresql_where=text(ONE_ACTIVE_RUN)),
    )


class RunBatch(Base):
    """One request to Constant Contact within a run; confirmed batches are never re-sent."""

    __tablename__ = "run_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # import | remove
    activity_id: Mapped[str | None] = mapped_column(String(36))
    # pending | sent | confirmed | failed | unknown (its outcome was never learnt)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    contacts: Mapped[int] = mapped_column(Integer, default=0)
    nbytes: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    # Whom the batch carries (email keys, value hashes, emails and customer ids; see
    # exports/delivery.py BatchMembers.pack), so a resumed run can confirm a batch whose activity
    # completed without sending it again.
    members: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("run_id", "kind", "seq", name="uq_run_batches_run_kind_seq"),
        # The batches still in flight, which each run looks for first (few, among many).
        Index("ix_run_batches_unsettled", "run_id",
              sqlite_where=text(UNSETTLED_BATCH), postgresql_where=text(UNSETTLED_BATCH)),
    )


class RejectedRow(Base):
    """A row that was not delivered, with the reason a person can act on."""

    __tablename__ = "rejected_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(60))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what, when, to what: every configuration change and every data transfer."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(36))
    actor_name: Mapped[str | None] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(80))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(36))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RateLimitBucket(Base):
    """A token bucket and daily counter per API key, shared by every worker using the database."""

    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)  # epoch seconds: arithmetic, not display
    day: Mapped[str] = mapped_column(String(10))  # UTC date the counter belongs to
    day_count: Mapped[int] = mapped_column(Integer, default=0)


class SystemSetting(Base):
    """Small pieces of runtime configuration (the system refresh schedule, alert targets)."""

    __tablename__ = "system_settings"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[dict[str, Any]]


class ApiToken(Base):
    """A token for the REST API; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists so people can tell them apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser session; the cookie holds a random id whose SHA-256 is stored here,
    so logging out (or disabling the user) ends it on the server."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
