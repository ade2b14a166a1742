"""Header injection: refuse a header with a line break that does not fold it.

A header line ends with CRLF; a CRLF followed by a space or a tab continues the same header
(RFC 5322 section 2.2.3, folding). Any other CR or LF in a header value starts a new header
line, or, as an empty line, ends the header block and starts the body: a value such as
``"hi\\r\\n\\r\\nInjected body"`` lets whoever controls it write headers and content of their
own choosing. ``BytesGenerator``, which sending uses, writes such values as they are (on
3.10 to 3.13.0 at least: 3.13's ``verify_generated_headers`` is checked by the ``str``
``Generator`` only), and ``compat32`` also breaks lines where ``str.splitlines()`` does
(VT, FF, FS, GS, RS). ``email.policy.default`` refuses only some of them when they are set.

:func:`checking_policy` returns the policy with a ``fold_binary`` that checks each header
as the generator writes it, so every header of every MIME part is checked, once, in two
forms: the value as set (so a message is refused on every Python version alike, even where
the email package would encode the line break away), and the bytes written (so nothing the
folding does can split the header block). A properly folded header passes byte for byte
unchanged.
"""

from __future__ import annotations

import email.errors
import email.policy
import re
from typing import Any

__all__ = ["check_folded_header", "check_header_value", "checking_policy"]

# In the written header (bytes, CRLF line endings): a CR not followed by LF, an LF not
# preceded by CR, or a CRLF not followed by SP or HTAB (also at the very end of the text
# searched, which excludes the final CRLF: nothing folds it).
_WRITTEN_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n|\r\n(?![ \t])")
# In the value as set (text): a line break (CRLF, CR or LF) not followed by SP or HTAB.
_VALUE_BREAK = re.compile(r"\r\n(?![ \t])|\r(?![\n \t])|(?<!\r)\n(?![ \t])")
_SHOWN = 80  # characters of the offending header quoted in the error


def _refuse(name: str, where: str, shown: object) -> ValueError:
    return ValueError(
        f"header {name!r} has a CR or LF that does not fold the line ({where}): it would "
        f"start a new header or the body (header injection): {shown!r}"
    )


def check_header_value(name: str, value: str) -> None:
    """Raise ``ValueError`` if ``name`` or ``value`` has a line break not followed by SP/HTAB.

    ``value`` is the header's text as set (``str(value)`` for an ``email.header.Header``).
    A folded value (``"a\\r\\n b"``) passes; so does a bare LF before whitespace, which the
    generator writes as CRLF. A trailing line break is refused: nothing follows to fold it.
    """
    for text in (name, value):
        match = _VALUE_BREAK.search(text)
        if match is not None:
            shown = text[:_SHOWN] + ("..." if len(text) > _SHOWN else "")
            raise _refuse(name, f"at character {match.start()} of the value as set", shown)


def check_folded_header(name: str, folded: bytes) -> None:
    """Raise ``ValueError`` unless ``folded`` is one header: CRLF-terminated lines, folded.

    ``folded`` is the header as the generator writes it, ``Name: value`` and its final CRLF.
    """
    if folded.endswith(b"\r\n"):
        match = _WRITTEN_BREAK.search(folded, 0, len(folded) - 2)
        if match is None:
            return
        where = f"at byte {match.start()} as written"
    else:
        where = "at its end as written: no CRLF"
    raise _refuse(name, where, folded[:_SHOWN] + (b"..." if len(folded) > _SHOWN else b""))


def _fold_checked(fold: Any, name: str, value: Any) -> bytes:
    text = value if isinstance(value, str) else str(value)
    if "\r" in text or "\n" in text or "\r" in name or "\n" in name:
        check_header_value(name, text)
    try:
        folded: bytes = fold(name, value)
    except email.errors.HeaderParseError as exc:
        # compat32's Header.encode refuses a line that looks like an embedded header.
        raise ValueError(f"header {name!r} cannot be written: {exc}") from exc
    if _WRITTEN_BREAK.search(folded, 0, len(folded) - 2) or not folded.endswith(b"\r\n"):
        check_folded_header(name, folded)  # raises
    return folded


class _CheckingCompat32(email.policy.Compat32):
    def fold_binary(self, name: str, value: Any) -> bytes:
        return _fold_checked(super().fold_binary, name, value)


class _CheckingEmailPolicy(email.policy.EmailPolicy):
    def fold_binary(self, name: str, value: Any) -> bytes:
        return _fold_checked(super().fold_binary, name, value)


def checking_policy(policy: email.policy.Policy) -> email.policy.Policy:
    """``policy`` with the same settings, whose ``fold_binary`` refuses header injection.

    Accepts the policies ``BytesGenerator`` is given for sending: ``compat32`` and
    ``EmailPolicy`` (``SMTP``, ``SMTPUTF8``, ``default``) and their clones.
    """
    if isinstance(policy, (_CheckingCompat32, _CheckingEmailPolicy)):
        return policy
    checking: type[email.policy.Policy]
    if isinstance(policy, email.policy.EmailPolicy):
        checking = _CheckingEmailPolicy
    elif isinstance(policy, email.policy.Compat32):
        checking = _CheckingCompat32
    else:
        raise TypeError(f"cannot check headers written with {type(policy).__name__}")
    # As Policy.clone does: same attributes, shared header factory, no __init__.
    checked = checking.__new__(checking)
    for attr, value in vars(policy).items():
        object.__setattr__(checked, attr, value)
    return checked
