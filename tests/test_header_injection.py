"""Header injection: a header whose value holds a CR or LF that does not fold is refused.

The email package's BytesGenerator writes such values as they are (Python 3.10 to 3.13.0),
so a Subject of ``"hi\\r\\n\\r\\nInjected body"`` would end the header block early. ``flatten_message``
(behind ``send_message``) raises ``ValueError`` naming the header instead, before any
command is sent; properly folded headers go through byte for byte as before.
"""

from __future__ import annotations

import email
import email.errors
import email.generator
import email.header
import email.message
import email.policy
import io
import re
import sys
from collections.abc import Callable
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_core._email import flatten_message, prepare_message
from smtp_core._headers import check_folded_header, check_header_value, checking_policy

from .conftest import Adapter
from .servers import Handler


def compat32_message(subject: object) -> email.message.Message:
    msg = email.message.Message()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    msg["Subject"] = subject  # type: ignore[assignment]
    msg.set_payload("body\n")
    return msg


def mimetext_message(subject: object) -> email.message.Message:
    msg = MIMEText("body\n")
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    msg["Subject"] = subject  # type: ignore[assignment]
    return msg


def email_message_raw(subject: str) -> email.message.EmailMessage:
    """policy.default message; ``set_raw`` stores the value without the assignment checks."""
    msg = email.message.EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    msg.set_raw("Subject", subject)
    msg.set_content("body\n")
    return msg


BUILDERS: dict[str, Callable[[Any], email.message.Message]] = {
    "compat32": compat32_message,
    "MIMEText": mimetext_message,
    "EmailMessage.set_raw": email_message_raw,
}

INJECTIONS = [
    "hi\r\n\r\nInjected body",  # an empty line: the rest becomes the body
    "hi\r\nX-Injected: 1",  # CRLF + text: a header of the attacker's choosing
    "hi\nX-Injected: 1",  # bare LF
    "hi\rX-Injected: 1",  # bare CR
    "hi\r\nInjected line",  # CRLF + text that is not a header
    "hi\nInjected line",
    "hi\rInjected line",
    "hi\r\n \r\nInjected body",  # a whitespace line, then a line that is not folded
]

# Characters that str.splitlines() breaks at: compat32 writes each as a CRLF.
SPLITLINES = ["hi\x0bInjected line", "hi\x0cX-Injected: 1", "hi\x1c\x1dInjected body", "hi\x1eX"]

FOLDED = [
    "hi\r\n folded with a space",
    "hi\r\n\tfolded with a tab",
    "first\r\n second\r\n\tthird",
]


def unchecked_flatten(message: email.message.Message, policy: email.policy.Policy) -> bytes:
    """What the generator writes with no header check (the bytes sent before the check)."""
    with io.BytesIO() as buffer:
        email.generator.BytesGenerator(buffer, policy=policy).flatten(message)
        return buffer.getvalue()


def folds_properly(folded: bytes) -> bool:
    """An independent oracle: CRLF-terminated, every later line starts with SP or HTAB."""
    if not folded.endswith(b"\r\n"):
        return False
    lines = folded[:-2].split(b"\r\n")
    return all(b"\r" not in line and b"\n" not in line for line in lines) and all(
        line[:1] in (b" ", b"\t") for line in lines[1:]
    )


# -- every message class ----------------------------------------------------------------


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("builder", list(BUILDERS), ids=list(BUILDERS))
def test_injected_value_is_refused(builder: str, value: str) -> None:
    msg = BUILDERS[builder](value)
    with pytest.raises(ValueError, match="'Subject'"):
        flatten_message(msg)
    with pytest.raises(ValueError, match="'Subject'"):
        prepare_message(msg, smtputf8_supported=True, eightbitmime_supported=True)
    # and in the 7-bit re-encoding path (a server without 8BITMIME)
    with pytest.raises(ValueError, match="'Subject'"):
        flatten_message(msg, cte_type="7bit")


@pytest.mark.parametrize("value", ["hi\r\n\r\nInjected body"])
def test_what_the_generator_writes_without_the_check(value: str) -> None:
    """The vulnerability itself: BytesGenerator (which sending uses) splits the header block.

    Python 3.13.0's str Generator refuses such headers (verify_generated_headers), but its
    BytesGenerator does not check; a later Python may refuse them there too.
    """
    for msg, policy in [
        (compat32_message(value), email.policy.compat32.clone(linesep="\r\n")),
        (email_message_raw(value), email.policy.SMTP),
    ]:
        try:
            unchecked = unchecked_flatten(msg, policy)
        except email.errors.MessageError as exc:  # HeaderWriteError, where Python checks
            assert "newline" in str(exc)
        else:
            assert re.search(rb"\r\nSubject: hi\r\n(\r\n)?Injected body\r\n", unchecked), unchecked
        with pytest.raises(ValueError, match="'Subject'"):
            flatten_message(msg)


@pytest.mark.parametrize("value", SPLITLINES)
@pytest.mark.parametrize("builder", list(BUILDERS), ids=list(BUILDERS))
def test_characters_the_email_package_breaks_lines_at(builder: str, value: str) -> None:
    """compat32 breaks lines where str.splitlines() does (VT, FF, FS, GS, RS): the written
    check refuses what comes out. Where a Python writes them as plain characters on one
    line (EmailPolicy on 3.13), that is no injection, and the header is sent."""
    msg = BUILDERS[builder](value)
    policy = email.policy.SMTP if builder.startswith("EmailMessage") else email.policy.compat32.clone(linesep="\r\n")
    try:
        written = policy.fold_binary("Subject", dict(msg.raw_items())["Subject"])
    except email.errors.HeaderParseError:  # compat32: "appears to contain an embedded header"
        written = b"\r\nX-Injected"
    if folds_properly(written):
        assert b"\r\nSubject: " + value.encode() + b"\r\n" in flatten_message(msg)
    else:
        with pytest.raises(ValueError, match="'Subject'"):
            flatten_message(msg)
    if builder != "EmailMessage.set_raw":  # compat32: refused on every Python
        assert not folds_properly(written)


@pytest.mark.parametrize("value", FOLDED)
@pytest.mark.parametrize("builder", ["compat32", "MIMEText"])
def test_folded_value_goes_through_unchanged(builder: str, value: str) -> None:
    msg = BUILDERS[builder](value)
    content = flatten_message(msg)
    expected_subject = b"Subject: " + value.encode() + b"\r\n"
    assert expected_subject in content
    policy = email.policy.compat32.clone(linesep="\r\n")
    assert content == unchecked_flatten(msg, policy)


@pytest.mark.parametrize("value", FOLDED)
def test_folded_raw_value_on_email_message_goes_through(value: str) -> None:
    msg = email_message_raw(value)
    content = flatten_message(msg)
    assert b"Subject: " + value.encode() + b"\r\n" in content
    assert content == unchecked_flatten(msg, email.policy.SMTP)


@pytest.mark.parametrize("value", INJECTIONS + FOLDED)
def test_policy_default_refuses_line_breaks_when_assigned(value: str) -> None:
    """``EmailMessage`` (policy.default) already refuses these at assignment, with ValueError."""
    msg = email.message.EmailMessage()
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        msg["Subject"] = value


@pytest.mark.parametrize("value", ["hi\r\n", "hi\n", "hi\r"])
def test_trailing_line_break_is_refused(value: str) -> None:
    """A single trailing line break passes policy.default's assignment check (it counts
    lines). Before Python 3.13 its generator then writes an empty line that ends the header
    block, and the headers after it become the body; 3.13 encodes it as an encoded word.
    The value check refuses it on every version, and on compat32 messages too (whose
    generator drops it)."""
    msg = email.message.EmailMessage()
    msg["From"] = "a@example.org"
    msg["Subject"] = value  # accepted by the email package
    msg["To"] = "b@example.org"
    msg.set_content("body\n")
    unchecked = unchecked_flatten(msg, email.policy.SMTP)
    if sys.version_info < (3, 13):
        assert b"Subject: " + value.encode() + b"\r\nTo:" in unchecked  # what would be sent
    with pytest.raises(ValueError, match="'Subject'"):
        flatten_message(msg)
    with pytest.raises(ValueError, match="'Subject'"):
        flatten_message(compat32_message(value))


def test_header_object_values() -> None:
    for value in INJECTIONS:
        header = email.header.Header(value, header_name="Subject")
        with pytest.raises(ValueError, match="'Subject'"):
            flatten_message(compat32_message(header))
    folded = email.header.Header("hi\r\n folded", header_name="Subject")
    assert b"Subject: hi\r\n folded\r\n" in flatten_message(compat32_message(folded))
    # a long encoded header, folded by the email package itself
    long = email.header.Header("caf\u00e9 " * 40, charset="utf-8", header_name="Subject")
    content = flatten_message(compat32_message(long))
    assert content.count(b"\r\n =?utf-8?") >= 3
    assert content == unchecked_flatten(compat32_message(long), email.policy.compat32.clone(linesep="\r\n"))


def test_email_message_refuses_header_objects() -> None:
    """policy.default has no use for ``email.header.Header`` values: assignment fails."""
    msg = email.message.EmailMessage()
    with pytest.raises(TypeError):
        msg["Subject"] = email.header.Header("hi\r\n\r\nInjected body")  # type: ignore[assignment]


@pytest.mark.parametrize("policy", [email.policy.compat32, email.policy.default], ids=["compat32", "default"])
def test_parsed_messages(policy: email.policy.Policy) -> None:
    """The parser splits at every line break, so what it returns writes back line for line:
    a bare CR or LF in the source becomes a header boundary of the parsed message itself,
    and folded headers are kept as they were."""
    source = (
        b"From: a@example.org\r\nTo: b@example.org\r\n"
        b"Subject: a long subject\r\n folded once\r\n\tand twice\r\n"
        b"X-Bare-LF: one\nX-Bare-CR: two\rX-Last: three\r\n\r\nbody\r\n"
    )
    msg = email.message_from_bytes(source, policy=policy)
    assert msg["X-Bare-CR"] is not None  # the parser made it a header of its own
    content = flatten_message(msg)
    assert content.startswith(
        b"From: a@example.org\r\nTo: b@example.org\r\n"
        b"Subject: a long subject\r\n folded once\r\n\tand twice\r\n"
        b"X-Bare-LF: one\r\nX-Bare-CR: two\r\nX-Last: three\r\n\r\n"
    )
    # A value added after parsing is checked like any other (set_raw skips policy.default's
    # assignment check).
    msg.set_raw("X-Added", "x\r\n\r\nInjected body")
    with pytest.raises(ValueError, match="'X-Added'"):
        flatten_message(msg)


def test_header_in_a_mime_part_is_checked() -> None:
    outer = MIMEMultipart()
    outer["From"] = "a@example.org"
    outer["To"] = "b@example.org"
    part = MIMEText("part\n")
    part["Content-Description"] = "x\r\n\r\nInjected part body"
    outer.attach(part)
    with pytest.raises(ValueError, match="'Content-Description'"):
        flatten_message(outer)


def test_injected_header_name_is_refused() -> None:
    msg = compat32_message("hi")
    msg["X-Name\r\nX-Injected"] = "value"
    with pytest.raises(ValueError, match="X-Injected"):
        flatten_message(msg)


def test_long_headers_folded_by_the_email_package_are_unchanged() -> None:
    to = ", ".join(f"Recipient Number {i} <r{i}@example.org>" for i in range(30))
    subject = "word " * 60
    compat = compat32_message(subject)
    compat["Cc"] = to
    modern = email.message.EmailMessage()
    modern["From"] = "a@example.org"
    modern["To"] = to
    modern["Subject"] = subject + "caf\u00e9 " * 30
    modern.set_content("body\n")
    for msg, policy in [
        (compat, email.policy.compat32.clone(linesep="\r\n")),
        (modern, email.policy.SMTP),
    ]:
        content = flatten_message(msg)
        assert content.count(b"\r\n ") > 5  # folded
        assert content == unchecked_flatten(msg, policy)


@settings(max_examples=300, deadline=None)
@given(
    value=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=300),
    modern=st.booleans(),
)
def test_any_value_without_cr_or_lf(value: str, modern: bool) -> None:
    """Without CR or LF in the value, what the email package writes goes through unchanged,
    unless the email package itself breaks the line (compat32 breaks at \\x0b, \\x0c and
    \\x1c-\\x1e, as str.splitlines() does): then it is refused, and rightly."""
    if modern:
        msg: email.message.Message = email.message.EmailMessage()
        try:
            msg["Subject"] = value
        except ValueError:  # policy.default refuses what splitlines() splits, itself
            return
        msg["From"] = "a@example.org"
        policy: email.policy.Policy = email.policy.SMTPUTF8
    else:
        msg = compat32_message(value)
        policy = email.policy.compat32.clone(linesep="\r\n")
    try:
        expected = unchecked_flatten(msg, policy)
    except Exception as exc:  # the email package itself cannot write it
        with pytest.raises(type(exc)):
            flatten_message(msg, utf8=modern)
        return
    written_subject = policy.fold_binary("Subject", dict(msg.raw_items())["Subject"])
    if folds_properly(written_subject):
        assert flatten_message(msg, utf8=modern) == expected
    else:
        with pytest.raises(ValueError, match="'Subject'"):
            flatten_message(msg, utf8=modern)


# -- the checker ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folded",
    [
        b"Subject: hi\r\n",
        b"Subject: hi\r\n there\r\n",
        b"Subject: hi\r\n\tthere\r\n \r\n",
        b"Subject: \r\n =?utf-8?q?caf=C3=A9?=\r\n",
        b"Subject: 8-bit \xc3\xa9 and NUL \x00 are not line breaks\r\n",
    ],
)
def test_checker_accepts_folded_headers(folded: bytes) -> None:
    check_folded_header("Subject", folded)


@pytest.mark.parametrize(
    "folded",
    [
        b"Subject: hi\r\n\r\n",  # an empty line right after the header
        b"Subject: hi\r\n\r\nbody\r\n",
        b"Subject: hi\r\nX-Injected: 1\r\n",
        b"Subject: hi\nX\r\n",
        b"Subject: hi\rX\r\n",
        b"Subject: hi\r\r\n",  # a CR before the final CRLF
        b"Subject: hi\n\r\n",  # an LF before the final CRLF
        b"Subject: hi\n",  # not CRLF-terminated
        b"Subject: hi",
        b"Subject: hi\r\n \r\nX\r\n",
    ],
)
def test_checker_refuses_line_breaks_that_do_not_fold(folded: bytes) -> None:
    with pytest.raises(ValueError, match="header 'Subject'") as info:
        check_folded_header("Subject", folded)
    assert "header injection" in str(info.value)


@pytest.mark.parametrize("value", ["hi", "hi\r\n there", "hi\r\n\tthere", "hi\n there", "a\r\n \r\n b", "\x00\x85\u2028"])
def test_value_checker_accepts_folding(value: str) -> None:
    check_header_value("Subject", value)


@pytest.mark.parametrize("value", ["hi\r\n", "hi\r", "hi\n", "hi\r\nX", "hi\rX", "hi\nX", "hi\r\n\r\n body", "hi\r\r\n x"])
def test_value_checker_refuses_breaks_that_do_not_fold(value: str) -> None:
    with pytest.raises(ValueError, match=r"header 'Subject'.*header injection"):
        check_header_value("Subject", value)
    with pytest.raises(ValueError, match="header 'X-A\\\\nB'"):
        check_header_value("X-A\nB", "fine")


def test_checking_policy_keeps_settings() -> None:
    for policy in [
        email.policy.compat32.clone(linesep="\r\n"),
        email.policy.SMTP,
        email.policy.SMTPUTF8.clone(cte_type="7bit"),
    ]:
        checking = checking_policy(policy)
        assert isinstance(checking, type(policy))
        assert vars(checking) == vars(policy)
        assert checking_policy(checking) is checking
        assert checking.clone(max_line_length=40).max_line_length == 40
        with pytest.raises(ValueError, match="'Subject'"):
            checking.fold_binary("Subject", "hi\r\nX: 1" if policy is not email.policy.SMTP else "hi\r\n")
    with pytest.raises(TypeError):
        checking_policy(email.policy.Policy.__new__(email.policy.Policy))  # type: ignore[abstract]


# -- end to end, on every adapter -------------------------------------------------------


class RecordingHandler(Handler):
    """Records every MAIL, RCPT and DATA the server receives."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.seen.append(f"MAIL {address}")
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.seen.append(f"RCPT {address}")
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append("DATA")
        return await super().handle_DATA(server, session, envelope)


def test_end_to_end_injection_refused_and_folded_header_arrives(adapter: Adapter, smtpd: Any) -> None:
    handler = RecordingHandler()
    server = smtpd(handler=handler)
    injected = [compat32_message(value) for value in INJECTIONS]
    injected += [mimetext_message("hi\r\n\r\nInjected body"), email_message_raw("hi\r\nBcc: x@example.org")]
    good = compat32_message("first line\r\n\tfolded line")
    good.replace_header("From", "good@example.org")
    errors: list[str] = []

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            for msg in injected:
                with pytest.raises(ValueError, match="'Subject'") as info:
                    await smtp.send_message(msg)
                errors.append(str(info.value))
            # a batch is validated as a whole before anything is sent
            with pytest.raises(ValueError, match="'Subject'"):
                await smtp.send_messages([good, injected[0]])
            assert handler.seen == []  # not even MAIL FROM
            await smtp.send_message(good)  # the session is still usable

    adapter.run(main)
    assert len(errors) == len(injected)
    assert handler.seen == ["MAIL good@example.org", "RCPT b@example.org", "DATA"]
    (received,) = server.messages
    assert received.mail_from == "good@example.org"
    assert b"\r\nSubject: first line\r\n\tfolded line\r\n" in received.content
    assert b"Injected" not in received.content


@pytest.mark.not_on_sync("aiosmtplib's module-level send(); smtplib has none")
def test_module_level_send_refuses_injection(adapter: Adapter, smtpd: Any) -> None:
    handler = RecordingHandler()
    server = smtpd(handler=handler)

    async def main() -> None:
        with pytest.raises(ValueError, match="'Subject'"):
            await adapter.module.send(compat32_message(INJECTIONS[0]), hostname=server.host, port=server.port)

    adapter.run(main)
    assert handler.seen == []
