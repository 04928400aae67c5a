"""The rule field ``unsubscribed_in_constant_contact``: profiles whose email a connection
suppresses (its Constant Contact account shows them unsubscribed).

The suppression set lives in the state store; the profile store gets a copy of it (connection
id and email hash, never an email) before a segment using the field is evaluated, and the
condition compares the hash of each profile's ``email`` column with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from sqlglot import exp

from segment_export.db.models import Suppression
from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_
from segment_export.profiles.store import ProfileStore
from segment_export.segments.rules import Condition, parse_rule

FIELD = "unsubscribed_in_constant_contact"
# The profile store's copy of the suppression set; the name marks it as segment-export's own.
TABLE = "segment_export_suppressions"
EMAIL_COLUMN = "email"


def applies(name: str, schema: Mapping[str, str]) -> bool:
    """Whether a rule's field is this one (a real profile column of the same name wins)."""
    return name.casefold() == FIELD and not any(c.casefold() == FIELD for c in schema)


def compile_condition(cond: Condition, schema: Mapping[str, str]) -> exp.Expr:
    """``eq true``: the profile's trimmed, lower-cased email is suppressed by any connection;
    ``eq false`` (or ``ne true``): it is not (profiles without an email included)."""
    if cond.op not in ("eq", "ne") or not isinstance(cond.value, bool):
        raise DataError(N_("%(field)s is true/false: use eq or ne with true or false"),
                        values={"field": FIELD},
                        field=FIELD)
    email = next((c for c in schema if c.casefold() == EMAIL_COLUMN), None)
    if email is None:
        raise DataError(N_("%(field)s compares the profiles' %(email_column)s column, which "
                           "they do not have"),
                        values={"field": FIELD, "email_column": repr(EMAIL_COLUMN)}, field=FIELD)
    digest = exp.SHA2(this=exp.Lower(this=exp.Trim(this=exp.column(email, quoted=True))),
                      length=exp.Literal.number(256))
    hashes = exp.select(exp.column("email_hash")).from_(exp.to_table(TABLE))
    member = exp.Coalesce(this=digest.isin(query=hashes),
                          expressions=[exp.false()])
    wanted = cond.value if cond.op == "eq" else not cond.value
    return exp.Paren(this=member if wanted else exp.not_(member))


def uses_field(rules: Iterable[Any]) -> bool:
    """Whether any of these stored rules (JSON, or None for an expression) tests the field."""
    for rule in rules:
        if rule is None:
            continue
        try:
            conditions = parse_rule(rule).conditions()
        except DataError:
            continue  # a broken rule fails on its own, later, with its own message
        if any(c.field.casefold() == FIELD for c in conditions):
            return True
    return False


def suppressed_hashes(engine: Engine) -> pa.Table:
    """Every connection's suppressed hashes (connection_id, email_hash), for the profile store."""
    with engine.connect() as conn:
        rows = conn.execute(select(Suppression.connection_id, Suppression.email_hash)).all()
    return pa.table({"connection_id": pa.array([r[0] for r in rows], pa.string()),
                     "email_hash": pa.array([r[1] for r in rows], pa.string())})


def publish(store: ProfileStore, engine: Engine) -> int:
    """Copy every connection's suppression set into the profile store; returns its size.

    A store that cannot hold it (Spark, for now) raises ConfigurationError saying so.
    """
    table = suppressed_hashes(engine)
    store.replace_suppressions(table)
    return int(table.num_rows)


def publish_for(session: Session, store: ProfileStore, rules: Iterable[Any]) -> bool:
    """Publish the suppression set when any of ``rules`` tests the field; whether it did."""
    if not uses_field(rules):
        return False
    bind = session.get_bind()
    try:
        publish(store, bind if isinstance(bind, Engine) else bind.engine)
    except ConfigurationError as exc:
        raise DataError(exc.message, field=FIELD) from exc
    return True
