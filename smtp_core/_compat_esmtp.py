"""aiosmtplib's ``esmtp`` module: an EHLO reply's text as a dict of extensions.

The client itself keeps a server's capabilities in :class:`smtp_core.Capabilities`
(upper-case keywords, structured SIZE and AUTH values, lines that are not
keywords set apart). :func:`parse_esmtp_extensions` gives aiosmtplib's plain view
of the same text, for code that calls it directly.
"""

from __future__ import annotations

import re

__all__ = ["OLDSTYLE_AUTH_REGEX", "parse_esmtp_extensions"]

#: The pre-standard ``AUTH=MECH ...`` line some servers send besides (or instead of) AUTH.
OLDSTYLE_AUTH_REGEX = re.compile(r"auth=(?P<auth>.*)", flags=re.IGNORECASE)


def parse_esmtp_extensions(message: str) -> tuple[dict[str, str], list[str]]:
    """Parse an EHLO reply's message into ``({keyword: params}, [auth methods])``.

    ``message`` is the reply text with its lines joined by newlines (an
    ``SMTPResponse.message``); the first line, the server's name and greeting, is
    skipped. Keywords and auth method names are lower-cased; parameters are kept
    as sent. An old-style ``AUTH=PLAIN LOGIN`` line registers ``auth`` too.
    """
    extensions: dict[str, str] = {}
    auth_methods: list[str] = []
    for raw_line in message.split("\n")[1:]:
        line = raw_line.strip()
        if not line:
            continue
        oldstyle = OLDSTYLE_AUTH_REGEX.fullmatch(line)
        if oldstyle is not None:
            params = oldstyle["auth"]
            extensions["auth"] = params
            auth_methods.extend(method.lower() for method in params.split())
            continue
        keyword, _, params = line.partition(" ")
        keyword = keyword.lower()
        extensions[keyword] = params
        if keyword == "auth":
            auth_methods.extend(method.lower() for method in params.split())
    return extensions, auth_methods
