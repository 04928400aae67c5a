"""Mirror mode: take members this export added, and who left its segments, off the list.

Only list memberships are removed: never an unsubscribe, never a deleted contact, and never a
member this export did not add (only emails in its delivered state are candidates).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import insert, update

from segment_export.constant_contact import MAX_CONTACT_IDS, ConstantContactClient
from segment_export.db.models import Export, RunBatch
from segment_export.db.types import utcnow
from segment_export.errors import RetriableError
from segment_export.exports.delivery import delivered_emails, forget_members
from segment_export.exports.diff import Delivered, leavers

if TYPE_CHECKING:
    from segment_export.exports.engine import RunDependencies

log = logging.getLogger(__name__)
# Up to this many leavers are looked up one email at a time; beyond it one contact export of
# the list costs fewer requests than a lookup each.
LOOKUP_ONE_BY_ONE = 40


def _contact_ids(client: ConstantContactClient, list_id: str,
                 emails: dict[str, int]) -> dict[str, str]:
    """email -> contact id for the leavers that are still on the list."""
    if len(emails) <= LOOKUP_ONE_BY_ONE:
        ids: dict[str, str] = {}
        for email in emails:
            for contact in client.find_contacts(email=email, lists=[list_id], limit=1):
                ids[email] = contact.contact_id
        return ids
    activity = client.create_contact_export(list_ids=[list_id],
                                            fields=["contact_id", "email_address"])
    done = client.wait_for_activity(activity.activity_id, poll_interval=1.0)
    if done.state != "completed" or done.links.results is None:
        raise RetriableError(f"Contact export {activity.activity_id} ended {done.state}")
    ids = {}
    for row in client.download_contact_export(done.links.results.href):
        email = (row.get("email_address") or row.get("email") or "").strip().lower()
        if email in emails and row.get("contact_id"):
            ids[email] = row["contact_id"]
    return ids


def remove_leavers(
    deps: RunDependencies,
    client: ConstantContactClient,
    *,
    run_id: str,
    export: Export,
    delivered: Delivered,
    current_keys: np.ndarray[Any, Any],
    check_cancel: Callable[[], None],
) -> dict[str, int]:
    """Remove the leavers from the export's list; return the counts for the run report."""
    gone = leavers(delivered, current_keys)
    if gone.size == 0:
        return {"left_segment": 0, "removed": 0, "already_off_list": 0}
    emails = delivered_emails(deps.engine, export.id, gone)
    ids = _contact_ids(client, export.list_id, emails)
    # Leavers no longer on the list (removed by hand, unsubscribed, deleted) need no call.
    absent = [key for email, key in emails.items() if email not in ids]
    forget_members(deps.engine, export_id=export.id, keys=absent)
    removed = 0
    pairs = list(ids.items())
    for start in range(0, len(pairs), MAX_CONTACT_IDS):
        check_cancel()
        chunk = pairs[start:start + MAX_CONTACT_IDS]
        activity = client.remove_list_memberships([cid for _, cid in chunk], [export.list_id])
        with deps.engine.begin() as conn:
            conn.execute(insert(RunBatch).values(
                run_id=run_id, seq=start // MAX_CONTACT_IDS, kind="remove", state="sent",
                activity_id=activity.activity_id, contacts=len(chunk)))
        done = client.wait_for_activity(activity.activity_id, poll_interval=deps.poll_interval)
        if done.state != "completed":
            raise RetriableError(f"Removal activity {activity.activity_id} ended {done.state}")
        forget_members(deps.engine, export_id=export.id, keys=[emails[e] for e, _ in chunk])
        with deps.engine.begin() as conn:
            conn.execute(update(RunBatch).where(
                RunBatch.activity_id == activity.activity_id).values(
                state="confirmed", confirmed_at=utcnow(), counts={"removed": len(chunk)}))
        removed += len(chunk)
    log.info("mirror: %d left the segment, %d removed, %d already off the list",
             gone.size, removed, len(absent))
    return {"left_segment": int(gone.size), "removed": removed, "already_off_list": len(absent)}
