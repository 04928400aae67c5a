"""Plain email addresses of people: users' alert addresses and the alerts' chosen recipients."""

from __future__ import annotations

import re

from segment_export.errors import ConfigurationError
from segment_export.languages import N_

# Deliberately plain: an ASCII local part and a dotted domain, nothing a header could be bent
# with (no quotes, spaces, commas, angle brackets or line breaks).
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
ADDRESS_MAX_LENGTH = 254


def check_address(address: str) -> str:
    """``address`` trimmed and lower-cased, or ConfigurationError when it is not a plain address."""
    value = address.strip().lower()
    if len(value) > ADDRESS_MAX_LENGTH or not _ADDRESS.fullmatch(value):
        raise ConfigurationError(N_("Not an email address: %(address)s"),
                                 values={"address": repr(address)}, field="email")
    return value
