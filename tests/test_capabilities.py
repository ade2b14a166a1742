"""EHLO capability parsing."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_core import Capabilities


def caps(*lines: str) -> Capabilities:
    return Capabilities.from_ehlo_lines(["smtp.test greets you", *lines])


def test_keywords_case_insensitive() -> None:
    c = caps("pipelining", "8bitmime", "StartTLS")
    assert "PIPELINING" in c and "pipelining" in c and "Pipelining" in c
    assert c.pipelining and c.eightbitmime and c.starttls
    assert not c.chunking and not c.smtputf8
    assert c.server_name == "smtp.test"


def test_size() -> None:
    assert caps("SIZE 35882577").size == 35882577
    assert caps("SIZE").size is None
    assert caps("SIZE 0").size is None  # no fixed limit
    assert caps("SIZE abc").size is None
    assert "SIZE" in caps("SIZE")


def test_auth_forms_merged() -> None:
    c = caps("AUTH PLAIN login", "AUTH=LOGIN CRAM-MD5")
    assert c.auth_mechanisms == ("PLAIN", "LOGIN", "CRAM-MD5")
    assert c["auth"] == "PLAIN LOGIN CRAM-MD5"


def test_unknown_keywords_kept_raw() -> None:
    c = caps("X-EXPS GSSAPI NTLM", "DSN", "XCLIENT NAME ADDR")
    assert c["x-exps"] == "GSSAPI NTLM"
    assert c["DSN"] == ""
    assert c.as_esmtp_extensions() == {"x-exps": "GSSAPI NTLM", "dsn": "", "xclient": "NAME ADDR"}


def test_junk_and_bare_last_line() -> None:
    c = caps("PIPELINING", "!!! junk", "", " ")
    assert c.unparsed == ("!!! junk",)
    assert list(c) == ["PIPELINING"]


def test_empty() -> None:
    assert len(Capabilities()) == 0
    assert Capabilities.from_ehlo_lines([]).size is None


# -- the parser against its specification ------------------------------------------

_REFERENCE_KEYWORD = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?\Z", re.DOTALL)


def reference(lines: list[str]) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """The capability grammar written as a regular expression: (items, AUTH, unparsed)."""
    items: dict[str, str] = {}
    auth: list[str] = []
    unparsed: list[str] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        match = _REFERENCE_KEYWORD.match(line)
        if match is None:
            unparsed.append(line)
            continue
        keyword, value = match.group(1).upper(), (match.group(2) or "").strip()
        if keyword == "AUTH":
            auth += [mech for mech in dict.fromkeys(value.upper().split()) if mech not in auth]
            items["AUTH"] = " ".join(auth)
        elif keyword not in items:
            items[keyword] = value
    return items, tuple(auth), tuple(unparsed)


_LINE = st.text(alphabet=st.sampled_from("AUTHSIZEplain-=_ 9\t\u00a0\u0130x\n"), max_size=14)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=8))
def test_parsing_matches_the_grammar(lines: list[str]) -> None:
    c = caps(*lines)
    items, auth, unparsed = reference(lines)
    assert dict(c) == items and list(c) == list(items)
    assert c.auth_mechanisms == auth
    assert c.unparsed == unparsed
    assert c.as_esmtp_extensions() == {key.lower(): value for key, value in items.items()}


def test_a_reply_seen_again_gives_the_same_capabilities() -> None:
    lines = ("mx.test", "PIPELINING", "SIZE 1000", "AUTH PLAIN")
    first = Capabilities.from_ehlo_lines(lines)
    assert Capabilities.from_ehlo_lines(list(lines)) is first
    assert Capabilities.from_ehlo_lines((*lines[:3], "AUTH LOGIN")) is not first
    view = first.as_esmtp_extensions()
    view["size"] = "1"  # the caller's own copy
    assert first.as_esmtp_extensions() == {"pipelining": "", "size": "1000", "auth": "PLAIN"}
    assert first.size == 1000 and first.server_name == "mx.test"


def test_a_large_reply_is_not_remembered() -> None:
    lines = ["mx.test", *(f"X-{index} {'v' * 300}" for index in range(20))]
    assert Capabilities.from_ehlo_lines(lines) is not Capabilities.from_ehlo_lines(lines)
    assert len(Capabilities.from_ehlo_lines(lines)) == 20
