"""Alerts when a run fails for good or rejects more rows than allowed: a webhook call, and an
email to the active admins and the addresses an admin chose (docs/alerts.md)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from segment_export import audit, languages
from segment_export.addresses import check_address
from segment_export.db.models import AuditEvent, Export, RejectedRow, Run, SystemSetting, User
from segment_export.errors import ConfigurationError, NotFoundError
from segment_export.exports import alert_mail
from segment_export.exports.alert_mail import Reason, RunAlert
from segment_export.exports.validate import REASONS
from segment_export.languages import N_
from segment_export.users import Role, require_role

if TYPE_CHECKING:
    from segment_export.config import Settings
    from segment_export.exports.dependencies import RunDependencies

log = logging.getLogger(__name__)
ALERT_SETTING = "alerts"
# The audit record that an alert email about a run went out: a run is emailed about once, even
# when alerting is reached again for it (a resumed or re-finished run, a second worker).
EMAIL_SENT = "alerts.email_sent"
EMAIL_FAILED = "alerts.email_failed"
TOP_REASONS = 5

# Runs whose alert email is being sent by this process right now (it may outlive the wait).
_sending: set[str] = set()
_sending_lock = threading.Lock()


# -- configuration ---------------------------------------------------------------------------


def _config(session: Session) -> dict[str, Any]:
    setting = session.get(SystemSetting, ALERT_SETTING)
    return dict(setting.value) if setting else {}


def _save_config(session: Session, value: dict[str, Any]) -> None:
    setting = session.get(SystemSetting, ALERT_SETTING)
    value = {k: v for k, v in value.items() if v not in (None, [])}
    if not value:
        if setting is not None:
            session.delete(setting)
    elif setting is None:
        session.add(SystemSetting(key=ALERT_SETTING, value=value))
    else:
        setting.value = value


def set_webhook(session: Session, *, actor: User, url: str | None) -> None:
    """Set (or with None remove) the webhook that failures and rejection alerts are posted to."""
    require_role(actor, Role.ADMIN)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError(N_("Not an http(s) URL: %(url)s"),
                                     values={"url": repr(url)}, field="webhook_url")
    _save_config(session, {**_config(session), "webhook_url": url})
    audit.record(session, actor=actor, action="alerts.webhook_set", target_type="system",
                 webhook_host=urlsplit(url).netloc if url else None)


def get_webhook(session: Session) -> str | None:
    url = _config(session).get("webhook_url")
    return url if isinstance(url, str) else None


def list_email_addresses(session: Session) -> list[str]:
    """The addresses an admin chose to receive alert emails (besides the admins themselves)."""
    return sorted(str(a) for a in _config(session).get("email_to", []))


def add_email_address(session: Session, *, actor: User, address: str) -> str:
    """Send alert emails to ``address`` too (admins only); returns it as stored."""
    require_role(actor, Role.ADMIN)
    value = check_address(address)
    config = _config(session)
    current = list_email_addresses(session)
    if value in current:
        return value
    _save_config(session, {**config, "email_to": sorted([*current, value])})
    audit.record(session, actor=actor, action="alerts.email_address_added",
                 target_type="system", address=value)
    return value


def remove_email_address(session: Session, *, actor: User, address: str) -> str:
    """Stop sending alert emails to ``address`` (admins only)."""
    require_role(actor, Role.ADMIN)
    value = address.strip().lower()
    config = _config(session)
    current = list_email_addresses(session)
    if value not in current:
        raise NotFoundError(N_("%(address)s does not receive alert emails"),
                            values={"address": repr(address)}, field="email")
    _save_config(session, {**config, "email_to": [a for a in current if a != value]})
    audit.record(session, actor=actor, action="alerts.email_address_removed",
                 target_type="system", address=value)
    return value


def admin_addresses(session: Session) -> list[str]:
    """Email addresses of the active admins (a malformed one is skipped and logged)."""
    found = []
    for user in session.scalars(select(User).where(
            User.role == Role.ADMIN.value, User.disabled.is_(False), User.email.is_not(None))):
        try:
            found.append(check_address(user.email or ""))
        except ConfigurationError:
            log.warning("admin %r has a malformed email address; no alert email for them",
                        user.username)
    return found


def email_recipients(session: Session) -> list[str]:
    """Everyone an alert email goes to: the active admins with an address, and the chosen ones."""
    return sorted({*admin_addresses(session), *list_email_addresses(session)})


def recipients_by_language(session: Session, recipients: list[str],
                           default: str) -> dict[str, list[str]]:
    """``recipients`` grouped by the language their email is written in: the language of the
    (active) user with that address, else ``default``."""
    chosen: dict[str, str] = {}
    for email, language in session.execute(
            select(User.email, User.language).where(User.email.is_not(None),
                                                    User.disabled.is_(False))):
        if language and email:
            chosen.setdefault(email.strip().lower(), language)
    groups: dict[str, list[str]] = {}
    for address in recipients:
        groups.setdefault(languages.choose(chosen.get(address), default), []).append(address)
    return groups


def email_enabled(settings: Settings) -> bool:
    return settings.smtp_host is not None


# -- alerting on a finished run --------------------------------------------------------------


def alert_reason(run: Run, export: Export) -> tuple[Reason, int, int] | None:
    """Why ``run`` calls for an alert (with its rejected and in-scope rows), or None.

    Never for a dry run: it sends nothing, and whoever asked for it is reading its report.
    """
    if run.dry_run:
        return None
    counts = run.counts
    in_scope = max(int(counts.get("valid", 0)) + int(counts.get("rejected_locally", 0)), 1)
    rejected = int(counts.get("rejected_locally", 0)) + int(
        counts.get("rejected_by_constant_contact", 0))
    if run.status == "failed":
        return "failed", rejected, in_scope
    if (run.status == "succeeded_with_rejections" and export.rejected_alert_threshold is not None
            and rejected / in_scope > export.rejected_alert_threshold):
        return "rejections_over_threshold", rejected, in_scope
    return None


def alert_on_finish(deps: RunDependencies, run: Run) -> None:
    """Alert when ``run`` failed or its rejections pass the threshold: post to the webhook and
    email the recipients, whichever are configured.

    A broken webhook or mail server is logged, never allowed to change the run's outcome, and
    the run's completion waits for the mail server at most SEGMENT_EXPORT_SMTP_TIMEOUT seconds.
    """
    with deps.sessions() as session:
        export = session.get(Export, run.export_id)
        if export is None:
            return
        found = alert_reason(run, export)
        if found is None:
            return
        reason, rejected, in_scope = found
        url = get_webhook(session)
        if not url and not email_enabled(deps.settings):
            return
        recipients = email_recipients(session) if email_enabled(deps.settings) else []
        groups = recipients_by_language(session, recipients, deps.settings.alert_language)
        alert = RunAlert(
            reason=reason, run_id=run.id, export_name=export.name, status=run.status,
            message=run.message, message_text=run.message_text, error_kind=run.error_kind,
            attempt=run.attempt,
            counts=dict(run.counts), rejected=rejected, in_scope=in_scope,
            threshold=export.rejected_alert_threshold,
            top_reasons=_top_reasons(session, run.id) if reason != "failed" else [],
            run_url=_run_url(deps.settings, run.id),
        )
    if url:
        payload = {"event": f"run.{reason}", "run_id": run.id, "export": export.name,
                   "status": run.status, "message": run.message, "counts": run.counts}
        try:
            with httpx.Client(transport=deps.webhook_transport, timeout=10) as client:
                client.post(url, json=payload).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert webhook %s failed: %s", url, exc)
    if recipients:
        email_alert(deps, alert, groups)
    elif email_enabled(deps.settings):
        log.warning("run %s: no alert email sent, nobody receives them (no active admin has an "
                    "email address and none was added with `alerts email add`)", run.id)


def email_alert(deps: RunDependencies, alert: RunAlert, groups: dict[str, list[str]]) -> None:
    """Send the alert email about a run once, one message per language (``groups``: language
    -> recipients); wait for it at most SMTP_TIMEOUT seconds."""
    with _sending_lock:
        if alert.run_id in _sending:
            return
        with deps.sessions() as session:
            if _emailed(session, alert.run_id):
                log.info("run %s: the alert email went out already", alert.run_id)
                return
        _sending.add(alert.run_id)
    worker = threading.Thread(target=_deliver, args=(deps, alert, groups),
                              name=f"alert-mail-{alert.run_id[:8]}", daemon=True)
    worker.start()
    worker.join(deps.settings.smtp_timeout)
    if worker.is_alive():
        log.warning("run %s: the mail server is slow; the alert email goes on being sent in the "
                    "background", alert.run_id)


def _deliver(deps: RunDependencies, alert: RunAlert, groups: dict[str, list[str]]) -> None:
    settings = deps.settings
    recipients = [address for group in groups.values() for address in group]
    try:
        assert settings.smtp_from is not None
        messages = [(alert_mail.compose(alert, sender=settings.smtp_from, recipients=group,
                                        descriptions=REASONS, language=language), group)
                    for language, group in sorted(groups.items())]
        try:
            for message, group in messages:
                alert_mail.send(settings, message, group)
        except Exception as exc:  # a broken mail server must never reach the run
            error = alert_mail.describe_failure(exc, settings)
            log.warning("run %s: the alert email to %d recipient(s) through %s failed: %s",
                        alert.run_id, len(recipients), settings.smtp_host, error)
            _record(deps, alert, EMAIL_FAILED, recipients=len(recipients), error=error)
            return
        log.info("run %s: alert email (%s) sent to %d recipient(s)", alert.run_id, alert.reason,
                 len(recipients))
        _record(deps, alert, EMAIL_SENT, recipients=len(recipients))
    except Exception as exc:
        log.warning("run %s: the alert email could not be prepared or recorded: %s",
                    alert.run_id, alert_mail.describe_failure(exc, settings))
    finally:
        with _sending_lock:
            _sending.discard(alert.run_id)


def _record(deps: RunDependencies, alert: RunAlert, action: str, **details: Any) -> None:
    with deps.sessions.begin() as session:
        audit.record(session, actor=None, action=action, target_type="run",
                     target_id=alert.run_id, reason=alert.reason,
                     smtp_host=deps.settings.smtp_host, **details)


def _emailed(session: Session, run_id: str) -> bool:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == EMAIL_SENT, AuditEvent.target_id == run_id)) != 0


def _top_reasons(session: Session, run_id: str) -> list[tuple[str, int]]:
    rows = func.count().label("rows")
    stmt = (select(RejectedRow.reason, rows).where(RejectedRow.run_id == run_id)
            .group_by(RejectedRow.reason).order_by(rows.desc(), RejectedRow.reason)
            .limit(TOP_REASONS))
    return [(reason, int(count)) for reason, count in session.execute(stmt)]


def _run_url(settings: Settings, run_id: str) -> str | None:
    return f"{settings.public_url.rstrip('/')}/runs/{run_id}" if settings.public_url else None


# -- a test message --------------------------------------------------------------------------


def send_test_email(session: Session, *, actor: User, settings: Settings,
                    to: list[str] | None = None) -> list[str]:
    """Send a test message (admins only) to ``to`` or every recipient; returns the recipients.

    Raises ConfigurationError when email is not set up, and the mail server's error as
    ConfigurationError (log-safe) when it fails.
    """
    require_role(actor, Role.ADMIN)
    if not email_enabled(settings) or settings.smtp_from is None:
        raise ConfigurationError(N_("Email alerts are not set up: set SEGMENT_EXPORT_SMTP_HOST "
                                    "and SEGMENT_EXPORT_SMTP_FROM"), field="smtp_host")
    recipients = [check_address(a) for a in to] if to else email_recipients(session)
    if not recipients:
        raise ConfigurationError(N_("Nobody receives alert emails: give an admin an email "
                                    "address or add one with `alerts email add`"), field="email")
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "[segment-export] Test of the alert email"
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"{actor.username} sent this test message. Alert emails about failed "
                        "runs and rejections over an export's threshold reach this address.\n")
    try:
        alert_mail.send(settings, message, recipients)
    except Exception as exc:
        raise ConfigurationError(
            N_("The mail server %(smtp_host)s refused or failed: %(error)s"),
            values={"smtp_host": settings.smtp_host,
                    "error": alert_mail.describe_failure(exc, settings)},
            field="smtp_host") from None
    audit.record(session, actor=actor, action="alerts.email_tested", target_type="system",
                 recipients=len(recipients), smtp_host=settings.smtp_host)
    return recipients
