"""Alerts: a webhook call when a run fails for good or rejects more rows than allowed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.db.models import Export, Run, SystemSetting, User
from segment_export.errors import ConfigurationError
from segment_export.users import Role, require_role

if TYPE_CHECKING:
    from segment_export.exports.engine import RunDependencies

log = logging.getLogger(__name__)
ALERT_SETTING = "alerts"


def set_webhook(session: Session, *, actor: User, url: str | None) -> None:
    """Set (or with None remove) the webhook that failures and rejection alerts are posted to."""
    require_role(actor, Role.ADMIN)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError(f"Not an http(s) URL: {url!r}", field="webhook_url")
    setting = session.get(SystemSetting, ALERT_SETTING)
    if url is None:
        if setting is not None:
            session.delete(setting)
    elif setting is None:
        session.add(SystemSetting(key=ALERT_SETTING, value={"webhook_url": url}))
    else:
        setting.value = {**setting.value, "webhook_url": url}
    audit.record(session, actor=actor, action="alerts.webhook_set", target_type="system",
                 webhook_host=urlsplit(url).netloc if url else None)


def get_webhook(session: Session) -> str | None:
    setting = session.get(SystemSetting, ALERT_SETTING)
    return setting.value.get("webhook_url") if setting else None


def alert_on_finish(deps: RunDependencies, run: Run) -> None:
    """Post to the configured webhook when ``run`` failed or its rejections pass the threshold.

    A broken webhook is logged, never allowed to change the run's outcome.
    """
    with deps.sessions() as session:
        setting = session.get(SystemSetting, ALERT_SETTING)
        export = session.get(Export, run.export_id)
    url = (setting.value.get("webhook_url") if setting else None)
    if not url or export is None:
        return
    reason = None
    if run.status == "failed":
        reason = "failed"
    elif run.status == "succeeded_with_rejections" and export.rejected_alert_threshold is not None:
        counts = run.counts
        in_scope = max(int(counts.get("valid", 0)) + int(counts.get("rejected_locally", 0)), 1)
        rejected = int(run.counts.get("rejected_locally", 0)) + int(
            run.counts.get("rejected_by_constant_contact", 0))
        if rejected / in_scope > export.rejected_alert_threshold:
            reason = "rejections_over_threshold"
    if reason is None:
        return
    payload = {"event": f"run.{reason}", "run_id": run.id, "export": export.name,
               "status": run.status, "message": run.message, "counts": run.counts}
    try:
        httpx.post(url, json=payload, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("alert webhook %s failed: %s", url, exc)
