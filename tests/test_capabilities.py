"""EHLO capability parsing."""

from __future__ import annotations

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
