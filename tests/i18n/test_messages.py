"""Messages written now and read later (a run's message): English as before for the API and
scripts, and the same message in Malay for pages and the CLI, numbers grouped by CLDR."""

from __future__ import annotations

import json

from segment_export.errors import ConfigurationError, RetriableError
from segment_export.languages import N_, Text, error_text, joined, shown, text


def _complete(sent: int, accepted: int, refused: int, unsubscribed: int, unchanged: int,
              rejected: int, no_consent: int) -> Text:
    # As the engine builds a finished run's message.
    return joined(
        text(N_("Sent %(sent)s contacts (%(accepted)s accepted, %(refused)s refused by Constant "
                "Contact, %(unsubscribed)s unsubscribed and not re-added)"),
             sent=sent, accepted=accepted, refused=refused, unsubscribed=unsubscribed),
        text(N_("%(count)s unchanged"), count=unchanged),
        text(N_("%(count)s rejected before sending"), count=rejected),
        text(N_("%(count)s without consent"), count=no_consent))


def test_the_english_text_is_the_message_the_api_always_had() -> None:
    message = _complete(1234567, 1234000, 567, 0, 12, 3, 4)
    # The f-string the engine wrote before messages were catalogue entries.
    sent, accepted, refused, unsubscribed, unchanged, rejected, no_consent = (
        1234567, 1234000, 567, 0, 12, 3, 4)
    before = (f"Sent {sent:,} contacts ({accepted:,} accepted, {refused:,} refused by Constant "
              f"Contact, {unsubscribed:,} unsubscribed and not re-added); {unchanged:,} "
              f"unchanged; {rejected:,} rejected before sending; {no_consent:,} without consent.")
    assert str(message) == before


def test_the_same_message_reads_in_malay_after_a_round_trip_through_json() -> None:
    stored = json.loads(json.dumps(_complete(1234567, 1234000, 567, 0, 12, 3, 4).as_json()))
    malay = Text.from_json(stored).in_language("ms")
    assert malay == ("1,234,567 kenalan dihantar (1,234,000 diterima, 567 ditolak oleh Constant "
                     "Contact, 0 telah berhenti melanggan dan tidak ditambah semula); 12 tidak "
                     "berubah; 3 ditolak sebelum dihantar; 4 tanpa keizinan.")


def test_an_error_keeps_its_english_text_and_translates_its_hint() -> None:
    error = RetriableError("Constant Contact answered 503 for GET /v3/contact_lists")
    said = text(N_("Retrying after: %(error)s"), error=error_text(error))
    assert str(said) == f"Retrying after: {error}"
    assert Text.from_json(json.loads(json.dumps(said.as_json()))).in_language("ms") == (
        "Mencuba semula selepas: Constant Contact answered 503 for GET /v3/contact_lists "
        "(Ini biasanya sementara; panggilan dicuba semula secara automatik.)")
    # A message with a bare % is shown as it is, never formatted.
    odd = ConfigurationError("100% of the rows are refused", hint="")
    assert error_text(odd).in_language("ms") == "100% of the rows are refused"


def test_what_a_reader_sees_of_old_and_unreadable_stored_messages() -> None:
    # Runs finished before message_text existed: a fixed English message is a msgid.
    assert shown("Cancelled before it started.", None, "ms") == "Dibatalkan sebelum ia bermula."
    assert shown("Something only English knows", None, "ms") == "Something only English knows"
    assert shown("Cancelled before it started.", None, "en") == "Cancelled before it started."
    # A stored Text this version cannot read falls back to the English message.
    assert shown("Resuming", {"parts": [["x", 3]]}, "ms") == "Menyambung semula"
    assert shown(None, None, "ms") == ""
