"""Work outside the state store that must wait for the caller's commit.

The services write and flush; the caller commits or rolls back (docs/architecture.md). A change
to something the state store's transaction does not cover, such as a deleted segment's members
in the profile store, must therefore wait for that commit: done at once, a rollback would leave
the segment saved without its members, and an export of it would send (or mirror) an empty list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

_PENDING = "segment_export.after_commit"


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once ``session``'s current transaction is committed; never if it is
    rolled back or the session is closed without a commit."""
    pending: list[Callable[[], None]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _run)
        event.listen(session, "after_transaction_end", _forget)
    pending.append(action)


def _run(session: Session) -> None:
    actions = list(session.info.get(_PENDING, ()))
    session.info[_PENDING] = []
    for action in actions:
        try:
            action()
        except Exception:
            # What is left (e.g. a deleted segment's member rows) is unreachable, not wrong: say
            # so and let the committed change stand.
            log.exception("after the commit: %r failed; the committed change stands", action)


def _forget(session: Session, transaction: SessionTransaction) -> None:
    # after_commit has run by now; what is still pending belongs to a rolled-back or closed
    # transaction and must not run on a later commit of the same session.
    if transaction.parent is None:
        session.info[_PENDING] = []
