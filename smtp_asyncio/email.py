"""aiosmtplib's ``email`` module: address parsing and message flattening helpers.

The same functions, signatures and results as aiosmtplib's (written once in
:mod:`smtp_core._compat_email`). ``parse_address`` and ``quote_address`` raise
``ValueError`` for an address holding whitespace, ``<``, ``>`` or ``"`` outside a
quoted local part, which could otherwise inject ESMTP parameters or commands.
"""

# Importable as in aiosmtplib, though not in its __all__:
from smtp_core._compat_email import ADDRESS_INJECTION_REGEX as ADDRESS_INJECTION_REGEX
from smtp_core._compat_email import ESCAPES_REGEX as ESCAPES_REGEX
from smtp_core._compat_email import QUOTED_LOCAL_PART_REGEX as QUOTED_LOCAL_PART_REGEX
from smtp_core._compat_email import SPECIALS_REGEX as SPECIALS_REGEX
from smtp_core._compat_email import UTF8_CHARSET as UTF8_CHARSET
from smtp_core._compat_email import _validate_address as _validate_address
from smtp_core._compat_email import extract_addresses as extract_addresses
from smtp_core._compat_email import (
    extract_recipients,
    extract_sender,
    flatten_message,
    parse_address,
    quote_address,
)

__all__ = (
    "extract_recipients",
    "extract_sender",
    "flatten_message",
    "parse_address",
    "quote_address",
)
