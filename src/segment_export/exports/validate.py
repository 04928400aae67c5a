"""Stage 2 of a run: normalise and validate segment members, one contact per email."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from segment_export.definitions.custom_fields import AccountField, cast_custom_fields
from segment_export.definitions.mapping import field_spec
from segment_export.definitions.phones import DEFAULT_PHONE_REGION, SMS_KEY_PREFIX, parse_phones
from segment_export.languages import N_

# A conservative ASCII dot-atom (RFC 5321), applied to the trimmed, lower-cased address.
# Constant Contact documents no syntax (support: no spaces, commas or brackets, one @, a full
# domain), so we accept a strict subset of what is deliverable rather than guess its validator:
# - local part: atoms of letters, digits and ``_ ' + -`` joined by single dots. The other RFC
#   atext characters ``! # $ % & * / = ? ^ ` { | } ~`` are left out: braces are brackets, which
#   support says are refused, and the rest are rare in customers' addresses and a common reason
#   for other systems to refuse one. The apostrophe stays (o'brien@...), and so does + (tags).
#   No quoted local parts, no comments.
# - domain: two or more LDH labels of 1-63 characters, neither starting nor ending with a
#   hyphen nor having ``--`` as their 3rd and 4th characters (reserved; xn-- internationalised
#   labels would need an IDNA check a regular expression cannot make); a top-level domain of
#   two or more letters; no IP literals.
# Only the pattern is pushed down to the profile store (DuckDB/RE2, PostgreSQL, Java), so it
# keeps to constructs all three read alike; the few refinements below run in Arrow only, and
# only ever refuse more (a duplicate-email plan holding an address Arrow refuses is harmless:
# every row with that address is refused before the plan is used).
# Upper-case letters are spelled out although the address is lower-cased first, so the
# pattern means the same matched before lower-casing (which some engines' lower() would make
# ASCII of U+212A KELVIN SIGN or U+0130).
_ATOM = r"[A-Za-z0-9_'+-]+"
_LABEL = (r"[A-Za-z0-9](?:[A-Za-z0-9-]?[A-Za-z0-9]|[A-Za-z0-9-](?:[A-Za-z0-9][A-Za-z0-9-]{0,59}"
          r"[A-Za-z0-9]|-[A-Za-z0-9](?:[A-Za-z0-9-]{0,58}[A-Za-z0-9])?))?")
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$"
# Top-level names that can never receive mail (RFC 6761, 6762, 7686).
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
_SPECIAL_USE_PATTERN = r"\.(?:" + "|".join(SPECIAL_USE_DOMAINS) + r")$"
# Only these are trimmed from the ends of an address, the same as the profile stores' \s;
# any other space or invisible character refuses the address rather than vanishing.
_TRIMMED = " \t\n\f\r"
EMAIL_MAX_LENGTH = 50

# Reasons a member is not sent; documented in docs/ and named in the rejected-rows report.
REASONS = {
    "missing_email": N_("The email column is empty for this profile."),
    "invalid_email": N_("The email address is not valid syntax."),
    "email_too_long": N_("The email address is longer than Constant Contact's 50 characters."),
    "superseded": N_("Another profile with the same email (and a higher customer id) is sent."),
    "no_marketing_consent": N_("The export's consent column is not true for this profile."),
    "invalid_custom_field": N_("A value does not fit its custom field's type (see the detail)."),
    "rejected_by_constant_contact": N_("Constant Contact refused the row (see the detail)."),
    # SMS (docs/sms.md). For a member with an email, the first two only mean its number was
    # left out: the contact itself is sent.
    "invalid_phone": N_("The phone number is not a valid number (see the detail)."),
    "phone_not_us": N_("The phone number is not a US number; Constant Contact SMS is US only."),
    "no_sms_consent": N_("No email, and no SMS consent with its date: nothing could reach them."),
    "sms_not_allowed": N_("No email, and the connection does not allow SMS-only contacts."),
}
# The reasons that name a phone number rather than the member (counted in ``sms_refused``).
SMS_REASONS = frozenset({"invalid_phone", "phone_not_us", "no_sms_consent", "sms_not_allowed"})


@dataclass(slots=True)
class ValidatedMembers:
    """The outcome of validation: contacts to send, rows refused, and field-level warnings."""

    contacts: pa.Table  # customer_id, email (normalised), one column per Constant Contact field
    rejected: pa.Table  # customer_id, email (as found), reason, detail
    in_segment: int
    no_consent: int
    warnings: Counter[str] = field(default_factory=Counter)
    # SMS: report rows with an SMS reason; of them, members sent without their number (rows of
    # ``rejected`` that refuse the number, not the member); valid SMS-only contacts.
    sms_refused: int = 0
    phone_dropped: int = 0
    sms_only: int = 0

    @property
    def rejected_count(self) -> int:
        return int(self.rejected.num_rows)

    @property
    def refused_members(self) -> int:
        """Members not sent (the report's rows less the numbers left out of a sent contact)."""
        return self.rejected_count - self.phone_dropped


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return pc.cast(column, pa.string())


def _rejections(
    table: pa.Table, mask: pa.ChunkedArray, reason: str,
    detail: str | Callable[[pa.Table], Any],
) -> pa.Table:
    """The rows ``mask`` picks, refused for ``reason``; ``detail`` is one text for all of them
    or a function of the picked rows giving one per row."""
    picked = table.filter(mask)
    return pa.table(
        {
            "customer_id": picked.column("customer_id"),
            "email": picked.column("raw_email"),
            "reason": pa.array([reason] * picked.num_rows, pa.string()),
            "detail": (pa.array([detail] * picked.num_rows, pa.string()) if isinstance(detail, str)
                       else detail(picked)),
        }
    )


def _truncate(values: pa.ChunkedArray, limit: int, name: str, warnings: Counter[str]) -> Any:
    too_long = pc.fill_null(pc.greater(pc.utf8_length(values), limit), False)
    count = pc.sum(too_long).as_py() or 0
    if count:
        warnings[f"{name}_truncated_to_{limit}"] += count
        return pc.if_else(too_long, pc.utf8_slice_codeunits(values, 0, limit), values)
    return values


def _empty_to_null(values: Any) -> Any:
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _birthday_columns(values: pa.ChunkedArray) -> tuple[Any, Any]:
    if not (pa.types.is_date(values.type) or pa.types.is_timestamp(values.type)):
        values = pc.cast(pc.cast(values, pa.string()), pa.date32())
    return pc.month(values), pc.day(values)


@dataclass(frozen=True, slots=True)
class DedupePlan:
    """The emails that more than one sendable profile holds, with the id that wins each."""

    winners: pa.Table  # email, sort_id_max

    @classmethod
    def nothing(cls) -> DedupePlan:
        return cls(pa.table({"email": pa.array([], pa.string()),
                             "sort_id_max": pa.array([], pa.string())}))

    def with_more(self, winners: pa.Table) -> DedupePlan:
        """This plan and more keys' winners (SMS-only members' numbers), ids as text: each
        use casts them back to the ids' own type."""
        if not winners.num_rows:
            return self
        if not self.winners.num_rows:
            return DedupePlan(winners)
        as_text = [t.set_column(1, "sort_id_max", _as_text(t.column("sort_id_max")))
                   for t in (self.winners, winners)]
        return DedupePlan(pa.concat_tables(as_text))


@dataclass(frozen=True, slots=True)
class SmsRules:
    """How an export reads its members' phone numbers: the region of a number written without
    its country code, and whether the connection's account takes SMS-only contacts."""

    region: str = DEFAULT_PHONE_REGION
    sms_only_allowed: bool = False


def repeated_keys(keys: pa.Table) -> pa.Table:
    """Of ``keys`` (columns ``email``, ``sort_id``), the keys held by several rows with the
    highest id of each (``email``, ``sort_id_max``): a dedupe plan's winners."""
    counts = pc.value_counts(keys.column("email"))
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if not len(repeated):
        return DedupePlan.nothing().winners
    dupes = keys.filter(pc.is_in(keys.column("email"), value_set=repeated))
    return dupes.group_by("email").aggregate([("sort_id", "max")])


def _consent_dates(values: pa.ChunkedArray) -> Any:
    """An SMS consent date as Constant Contact's YYYY-MM-DD, null where there is none or it is
    not a date (a timestamp keeps its day; text must start with an ISO date)."""
    if pa.types.is_date(values.type) or pa.types.is_timestamp(values.type):
        return pc.strftime(values, format="%Y-%m-%d")
    text = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(_as_text(values)), 0, 10)
    parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
    return pc.strftime(parsed, format="%Y-%m-%d")


@dataclass(slots=True)
class _SmsSplit:
    """Members with an email (their numbers checked), valid SMS-only members (keyed by their
    number), and what was refused or left out, with the counts."""

    with_email: pa.Table
    sms_only: pa.Table
    rejected: list[pa.Table]
    refused: int = 0
    # Members with an email whose bad number is left out: report rows once the member is sent.
    dropped: pa.Table | None = None


def _refusals(table: pa.Table, mask: Any, reasons: Any, details: Any) -> pa.Table:
    """The rows ``mask`` picks with one reason and detail each (arrays or one text)."""
    picked = table.filter(mask)

    def column(value: Any) -> Any:
        if isinstance(value, str):
            return pa.array([value] * picked.num_rows, pa.string())
        return pc.filter(value, mask)

    return pa.table({"customer_id": picked.column("customer_id"),
                     "email": picked.column("raw_email"),
                     "reason": column(reasons), "detail": column(details)})


def split_sms(table: pa.Table, mapping: Mapping[str, str], rules: SmsRules,
              warnings: Counter[str]) -> _SmsSplit:
    """Check the members' SMS numbers and consents (docs/sms.md).

    A member with an email is sent as before; its number goes with it when it is a valid US
    number, else it is left out and the report says why. A member with no email but a number
    is an SMS-only contact: sent (keyed ``sms:<E.164>``) only with a valid US number, an SMS
    consent with its date, and a connection that allows SMS-only contacts; else refused.
    """
    raw = _empty_to_null(_as_text(table.column("f:sms_number")))
    parsed = parse_phones(raw, region=rules.region)
    valid = pc.is_valid(parsed.digits)
    bad = pc.and_(pc.is_valid(raw), pc.invert(valid))
    names = table.column_names
    if "sms_consent" in mapping:
        consent = _consent_mask(table, "f:sms_consent")
        dates = _consent_dates(table.column("f:sms_consent_date"))
        consented = pc.and_(valid, consent)
        explicit = pc.and_(consented, pc.is_valid(dates))
        undated = pc.sum(pc.and_(consented, pc.is_null(dates))).as_py() or 0
        if undated:
            warnings["sms_consent_without_date_sent_not_set"] += undated
        table = table.set_column(names.index("f:sms_consent_date"), "f:sms_consent_date",
                                 pc.if_else(explicit, dates, pa.scalar(None, pa.string())))
        table = table.drop_columns(["f:sms_consent"])
        no_consent_detail = (f"no email, and {mapping['sms_consent']} is not true with a date in "
                             f"{mapping['sms_consent_date']}")
    else:
        explicit = pa.array([False] * table.num_rows, pa.bool_())
        no_consent_detail = "no email, and the export maps no SMS consent"
    table = table.set_column(table.column_names.index("f:sms_number"), "f:sms_number",
                             parsed.digits)
    no_email = pc.fill_null(pc.equal(table.column("email"), ""), True)
    with_email = pc.invert(no_email)
    sms_only = pc.and_(no_email, pc.is_valid(raw))
    split = _SmsSplit(table.filter(pc.invert(sms_only)), table.slice(0, 0), [])
    # Members with an email keep it and lose only a bad number: sent without it.
    dropped = pc.and_(with_email, bad)
    if pc.any(dropped).as_py():
        split.dropped = _refusals(
            table, dropped, parsed.problem,
            pc.binary_join_element_wise(parsed.detail, "; the contact is sent without it", ""))
    refused_bad = pc.and_(sms_only, bad)
    unconsented = pc.and_(pc.and_(sms_only, valid), pc.invert(explicit))
    sendable = pc.and_(sms_only, explicit)
    split.rejected.append(_refusals(table, refused_bad, parsed.problem, parsed.detail))
    split.rejected.append(_refusals(table, unconsented, "no_sms_consent", no_consent_detail))
    if rules.sms_only_allowed:
        kept = table.filter(sendable)
    else:
        split.rejected.append(_refusals(
            table, sendable, "sms_not_allowed",
            "no email, and the connection's sms_only_allowed setting is off"))
        kept = table.slice(0, 0)
    split.refused = sum(t.num_rows for t in split.rejected)
    if kept.num_rows:
        keys = pc.binary_join_element_wise(SMS_KEY_PREFIX, parsed.e164.filter(
            pc.fill_null(sendable, False)), "")
        kept = kept.set_column(kept.column_names.index("email"), "email", keys)
    split.sms_only = kept
    return split


def _superseded_detail(picked: pa.Table) -> Any:
    sms = pc.starts_with(picked.column("email"), SMS_KEY_PREFIX)
    return pc.if_else(sms, "same SMS number as a profile with a higher customer id",
                      "same email as a profile with a higher customer id")


def _base(members: pa.Table, *, id_column: str, email_column: str) -> pa.Table:
    ids = members.column(id_column)
    raw_email = _as_text(members.column(email_column))
    return pa.table(
        {
            "customer_id": _as_text(ids),
            "sort_id": ids if pa.types.is_integer(ids.type) else _as_text(ids),
            "raw_email": raw_email,
            # ASCII lower-casing only: a non-ASCII letter stays and is refused, never folded
            # into a different address (U+212A KELVIN SIGN would become k).
            "email": pc.ascii_lower(pc.utf8_trim(raw_email, characters=_TRIMMED)),
        }
    )


def _consent_mask(members: pa.Table, consent_column: str) -> Any:
    consent = members.column(consent_column)
    if not pa.types.is_boolean(consent.type):
        truthy = pa.array(["true", "yes", "1", "y"])
        consent = pc.is_in(pc.utf8_lower(_as_text(consent)), truthy)
    return pc.fill_null(consent, False)


def _email_problems(table: pa.Table) -> tuple[Any, Any, Any]:
    email = table.column("email")
    missing = pc.fill_null(pc.equal(email, ""), True)
    too_long = pc.and_(pc.invert(missing), pc.greater(pc.utf8_length(email), EMAIL_MAX_LENGTH))
    bad_syntax = pc.and_(
        pc.and_(pc.invert(missing), pc.invert(too_long)),
        pc.or_(pc.invert(pc.match_substring_regex(email, EMAIL_PATTERN)),
               _special_use_domain(email)),
    )
    return missing, too_long, bad_syntax


def _special_use_domain(email: Any) -> Any:
    # Suffix comparisons: a fraction of the time of one more regular expression over every row.
    found = None
    for name in SPECIAL_USE_DOMAINS:
        ends = pc.ends_with(email, f".{name}")
        found = ends if found is None else pc.or_(found, ends)
    return found


def _code_point(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def _non_ascii(char: str) -> str:
    return f"non-ASCII character {_code_point(char)} in address"


def _control(char: str) -> str:
    if char == " ":
        return "space in address"
    return f"control character {_code_point(char)} in address"


def _in_local(char: str) -> str:
    return f"character {char!r} not allowed in the local part"


def _in_domain(char: str) -> str:
    return f"character {char!r} not allowed in the domain"


def _special_use(tld: str) -> str:
    return f"special-use domain .{tld} cannot receive mail"


# Why an address fails the rules above, most basic first: (where, pattern, detail). ``where``
# is the whole address or a part of it, ``detail`` a text, or a function of the first match.
_EMAIL_RULES: tuple[tuple[str, str, str | Callable[[str], str]], ...] = (
    ("address", r"[^\x00-\x7f]", _non_ascii),
    ("address", r"[\x00-\x20\x7f]", _control),
    ("address", r"^[^@]*$", N_("no @ in address")),
    ("address", r"@.*@", N_("more than one @ in address")),
    ("local", r"^$", N_("local part is empty")),
    ("local", r'^"', N_("quoted local part is not accepted")),
    ("local", r"^\.", N_("local part starts with a dot")),
    ("local", r"\.$", N_("local part ends with a dot")),
    ("local", r"\.\.", N_("local part has two dots in a row")),
    ("local", r"[^a-z0-9_'+.-]", _in_local),
    ("domain", r"^$", N_("domain is empty")),
    ("domain", r"^\[", N_("IP address literal as domain is not accepted")),
    ("domain", r"[^a-z0-9.-]", _in_domain),
    ("domain", r"^\.", N_("domain starts with a dot")),
    ("domain", r"\.$", N_("domain ends with a dot")),
    ("domain", r"\.\.", N_("domain has two dots in a row")),
    ("domain", r"^[^.]*$", N_("domain has no dot (not a full domain)")),
    ("domain", r"(?:^|\.)[^.]{64}", N_("domain label too long (over 63 characters)")),
    ("domain", r"(?:^|\.)-|-(?:\.|$)", N_("domain label starts or ends with a hyphen")),
    ("domain", r"(?:^|\.)[^.]{2}--",
     N_("domain label has -- as 3rd and 4th characters (reserved; xn-- labels not accepted)")),
    ("domain", r"\.[a-z]*[^a-z.][^.]*$", N_("top-level domain is not letters only")),
    ("domain", r"\.[a-z]$", N_("top-level domain is a single letter")),
    ("domain", _SPECIAL_USE_PATTERN.replace(r"\.(?:", r"\.(?P<tld>", 1), _special_use),
)


def email_syntax_details(emails: Any) -> pa.Array:
    """Which rule each refused (trimmed, lower-cased) address breaks, as report text.

    Runs on the refused rows only; a rule naming a character is formatted once per distinct
    character, not per row.
    """
    if isinstance(emails, pa.ChunkedArray):
        emails = emails.combine_chunks()
    parts = pc.extract_regex(pc.fill_null(emails, ""), r"^(?P<local>[^@]*)@(?P<domain>.*)$")
    where = {"address": emails, "local": pc.struct_field(parts, "local"),
             "domain": pc.struct_field(parts, "domain")}
    # Each rule looks only at the rows no earlier rule explained; most go in the first few.
    open_rows = pa.array(range(len(emails)), pa.int64())
    found_rows: list[pa.Array] = []
    found_texts: list[pa.Array] = []
    for part, pattern, text in _EMAIL_RULES:
        if not len(open_rows):
            break
        values = where[part].take(open_rows)
        if isinstance(text, str):
            hit = pc.fill_null(pc.match_substring_regex(values, pattern), False)
            texts = pa.array([text] * (pc.sum(hit).as_py() or 0), pa.string())
        else:
            group = pattern if "(?P<" in pattern else f"(?P<{part}>{pattern})"
            first = pc.extract_regex(values, group)
            hit = pc.is_valid(first)
            matched = pc.struct_field(first, 0).filter(hit)
            distinct = pc.unique(matched)
            named = pa.array([text(c) for c in distinct.to_pylist()], pa.string())
            texts = named.take(pc.index_in(matched, value_set=distinct))
        found_rows.append(open_rows.filter(hit))
        found_texts.append(texts)
        open_rows = open_rows.filter(pc.invert(hit))
    found_rows.append(open_rows)
    found_texts.append(pa.array(["not a valid email address"] * len(open_rows), pa.string()))
    order = pc.sort_indices(pa.concat_arrays(found_rows))
    return pa.concat_arrays(found_texts).take(order)


def plan_dedupe(
    batches: Iterable[pa.RecordBatch],
    *,
    id_column: str,
    email_column: str,
    consent_column: str | None = None,
) -> DedupePlan:
    """First pass over only the id, email and consent columns: which emails repeat among the
    profiles that could be sent, and which customer id wins each (the highest).

    Keeps memory to the repeated emails, so the second pass can stream every other column.
    """
    seen: list[pa.Table] = []
    for batch in batches:
        members = pa.Table.from_batches([batch])
        table = _base(members, id_column=id_column, email_column=email_column)
        if consent_column:
            table = table.filter(_consent_mask(members, consent_column))
        missing, too_long, bad_syntax = _email_problems(table)
        table = table.filter(pc.invert(pc.or_(pc.or_(missing, too_long), bad_syntax)))
        seen.append(table.select(["email", "sort_id"]))
    if not seen:
        return DedupePlan.nothing()
    emails = pa.concat_tables(seen)
    counts = pc.value_counts(emails.column("email"))
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if not len(repeated):
        return DedupePlan.nothing()
    dupes = emails.filter(pc.is_in(emails.column("email"), value_set=repeated))
    return DedupePlan(dupes.group_by("email").aggregate([("sort_id", "max")]))


def validate_members(
    members: pa.Table,
    *,
    id_column: str,
    mapping: Mapping[str, str],
    consent_column: str | None = None,
    dedupe: DedupePlan | None = None,
    custom_fields: Mapping[str, AccountField] | None = None,
    sms: SmsRules | None = None,
) -> ValidatedMembers:
    """Normalise, validate and de-duplicate members; every refused row gets a reason.

    Emails are trimmed and lower-cased; over-long names and other text fields are truncated
    (counted in ``warnings``); one contact per email, the highest customer id winning. When
    ``members`` is one chunk of a larger set, ``dedupe`` (from :func:`plan_dedupe` over the
    whole set) decides duplicates across chunks; without it, duplicates are found within
    ``members`` alone. ``custom_fields`` (the account's, by name) casts each mapped custom
    field by its type; a value that does not fit refuses its row (``invalid_custom_field``).
    When the mapping maps ``sms_number``, ``sms`` says how numbers are read (:func:`split_sms`).
    """
    warnings: Counter[str] = Counter()
    in_segment = members.num_rows
    table = _base(members, id_column=id_column, email_column=mapping["email"])
    for name, column in mapping.items():
        if name != "email":
            table = table.append_column(f"f:{name}", members.column(column))

    rejected: list[pa.Table] = []
    no_consent = 0
    if consent_column:
        has_consent = _consent_mask(members, consent_column)
        refused = pc.invert(has_consent)
        no_consent = pc.sum(refused).as_py() or 0
        rejected.append(
            _rejections(table, refused, "no_marketing_consent", f"{consent_column} is not true")
        )
        table = table.filter(has_consent)

    split = None
    if "sms_number" in mapping:
        split = split_sms(table, mapping, sms or SmsRules(), warnings)
        rejected.extend(split.rejected)
        table = split.with_email

    missing, too_long, bad_syntax = _email_problems(table)
    rejected.append(_rejections(table, missing, "missing_email", "no email address"))
    rejected.append(
        _rejections(table, too_long, "email_too_long", f"over {EMAIL_MAX_LENGTH} characters")
    )
    rejected.append(_rejections(table, bad_syntax, "invalid_email",
                                lambda picked: email_syntax_details(picked.column("email"))))
    table = table.filter(pc.invert(pc.or_(pc.or_(missing, too_long), bad_syntax)))
    if split is not None and split.sms_only.num_rows:
        table = pa.concat_tables([table, split.sms_only])

    # One contact per email (or SMS-only number): the highest customer id wins, the others are
    # reported. Duplicates are rare, so only the rows whose key repeats go through the
    # group-and-join.
    plan = dedupe if dedupe is not None else plan_dedupe(
        pa.Table.from_pydict({"i": table.column("sort_id"), "e": table.column("email")})
        .to_batches(), id_column="i", email_column="e")
    if dedupe is None and split is not None and split.sms_only.num_rows:
        plan = plan.with_more(repeated_keys(split.sms_only.select(["email", "sort_id"])))
    if plan.winners.num_rows:
        # Each row's position among the repeated emails (null: its email is not repeated) gives
        # the winning id to compare with, in row order, without a join.
        position = pc.index_in(table.column("email"), value_set=plan.winners.column("email"))
        shared = pc.is_valid(position)
        dupes = table.filter(shared)
        id_type = table.schema.field("sort_id").type
        best = plan.winners.column("sort_id_max").cast(id_type).take(position.filter(shared))
        is_winner = pc.equal(dupes.column("sort_id"), best)
        rejected.append(
            _rejections(dupes, pc.invert(is_winner), "superseded", _superseded_detail)
        )
        table = pa.concat_tables([table.filter(pc.invert(shared)), dupes.filter(is_winner)])

    if custom_fields:
        table, refused_values = cast_custom_fields(table, mapping, custom_fields)
        rejected.append(refused_values)

    contacts: dict[str, Any] = {"customer_id": table.column("customer_id"),
                                "email": table.column("email")}
    for name in mapping:
        if name == "email":
            continue
        spec = field_spec(name)
        if spec.kind == "sms_consent":
            continue  # it chose the body (explicit or not_set) and kept or cleared the date
        values = table.column(f"f:{name}")
        if spec.kind in ("sms_number", "sms_date"):
            contacts[name] = values  # checked and formatted by split_sms
        elif spec.kind == "birthday":
            contacts["birthday_month"], contacts["birthday_day"] = _birthday_columns(values)
        elif spec.kind == "anniversary" and (
            pa.types.is_date(values.type) or pa.types.is_timestamp(values.type)
        ):
            contacts[name] = pc.strftime(values, format="%Y-%m-%d")
        else:
            contacts[name] = _truncate(_empty_to_null(_as_text(values)), spec.max_length, name,
                                       warnings)
    sms_only = dropped = 0
    if split is not None:
        sms_only = pc.sum(pc.starts_with(table.column("email"), SMS_KEY_PREFIX)).as_py() or 0
        if split.dropped is not None:
            # Only for members sent: one refused for its email (or superseded) has that row.
            notes = split.dropped.filter(pc.is_in(split.dropped.column("customer_id"),
                                                  value_set=table.column("customer_id")))
            dropped = notes.num_rows
            rejected.append(notes)
    return ValidatedMembers(
        contacts=pa.table(contacts),
        rejected=pa.concat_tables(rejected) if rejected else _empty_rejections(),
        in_segment=in_segment,
        no_consent=no_consent,
        warnings=warnings,
        sms_refused=(split.refused + dropped) if split is not None else 0,
        phone_dropped=dropped,
        sms_only=int(sms_only),
    )


def _empty_rejections() -> pa.Table:
    return pa.table({n: pa.array([], pa.string()) for n in ("customer_id", "email", "reason",
                                                             "detail")})
