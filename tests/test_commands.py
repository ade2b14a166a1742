"""Command types: validation when built, serialisation, parse_command."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_core import (
    Auth,
    AuthResponse,
    Bdat,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Lhlo,
    LocalProtocolError,
    Mail,
    Noop,
    Quit,
    RawCommand,
    Rcpt,
    Rset,
    StartTLS,
    Vrfy,
    parse_command,
    validate_address,
    xtext_decode,
    xtext_encode,
)


def test_serialisation() -> None:
    assert Ehlo("client.example.org").to_bytes() == b"EHLO client.example.org\r\n"
    assert Helo("[192.0.2.1]").to_bytes() == b"HELO [192.0.2.1]\r\n"
    assert Lhlo("x.org").to_bytes() == b"LHLO x.org\r\n"
    assert Mail("a@b.org", ("SIZE=10", "BODY=8BITMIME")).to_bytes() == b"MAIL FROM:<a@b.org> SIZE=10 BODY=8BITMIME\r\n"
    assert Mail("<>").to_bytes() == b"MAIL FROM:<>\r\n"
    assert Mail("").to_bytes() == b"MAIL FROM:<>\r\n"
    assert Rcpt("<b@c.org>").to_bytes() == b"RCPT TO:<b@c.org>\r\n"
    assert Rcpt("Postmaster").to_bytes() == b"RCPT TO:<Postmaster>\r\n"
    assert Data().to_bytes() == b"DATA\r\n"
    assert Rset().to_bytes() == b"RSET\r\n"
    assert Quit().to_bytes() == b"QUIT\r\n"
    assert StartTLS().to_bytes() == b"STARTTLS\r\n"
    assert Noop().to_bytes() == b"NOOP\r\n"
    assert Help("MAIL").to_bytes() == b"HELP MAIL\r\n"
    assert Vrfy("alice").to_bytes() == b"VRFY alice\r\n"
    assert Expn("list").to_bytes() == b"EXPN list\r\n"
    assert Auth("plain", b"\0u\0p").to_bytes() == b"AUTH PLAIN AHUAcA==\r\n"
    assert Auth("LOGIN", b"").to_bytes() == b"AUTH LOGIN =\r\n"
    assert Auth("CRAM-MD5").to_bytes() == b"AUTH CRAM-MD5\r\n"
    assert AuthResponse(b"secret").to_bytes() == b"c2VjcmV0\r\n"
    assert AuthResponse(cancel=True).to_bytes() == b"*\r\n"
    assert Bdat(b"abc\r\n", last=True).to_bytes() == b"BDAT 5 LAST\r\nabc\r\n"
    assert Bdat(b"").to_bytes() == b"BDAT 0\r\n"
    assert Mail("用户@例子.广告", ("SMTPUTF8",)).to_bytes() == "MAIL FROM:<用户@例子.广告> SMTPUTF8\r\n".encode()


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "<user@example.com>",
        '"john doe"@example.com',
        '"a\\"b"@x.org',
        '"@"@x.org',
        "first.last+tag@sub.example.co.uk",
        "!#$%&'*+-/=?^_`{|}~@example.org",
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        "user@[x-tag:content]",
        "用户@例子.广告",
        "josé@example.org",
        "a@b_c.example.org",
    ],
)
def test_valid_addresses(address: str) -> None:
    inner = validate_address(address)
    assert inner == address.removeprefix("<").removesuffix(">")
    assert Rcpt(address).to_bytes() == f"RCPT TO:<{inner}>\r\n".encode()


@pytest.mark.parametrize(
    "address,fragment",
    [
        ("Name <a@b.org>", "angle brackets inside"),
        ("a@b@c.org", "more than one '@'"),
        (".a@b.org", "dot may not start"),
        ("a.@b.org", "dot may not start"),
        ("a..b@c.org", "follow another dot"),
        ("a@-b.com", "hyphen"),
        ("a@b-.com", "hyphen"),
        ("a@b..com", "empty label"),
        ("a b@c.org", "space not allowed"),
        ("a@b c.org", "whitespace"),
        ("ab.org", "no '@'"),
        ("@b.org", "source routes"),
        ("@a,@b:c@d.org", "source routes"),
        ("<a@b.org", "unbalanced"),
        ("a@b.org>", "unbalanced"),
        ("<<a@b.org>>", "angle brackets inside"),
        ("a@[300.1.1.1]", "invalid address literal"),
        ("a@[IPv6:zz]", "invalid IPv6"),
        ("a@[1.2.3.4", "unterminated"),
        ("x" * 65 + "@b.org", "longer than 64"),
        ("a@" + "b" * 260 + ".org", "longer than 255"),
        ("a(comment)@b.org", "quoted local part"),
        ('"unterminated@b.org', "invalid quoted"),
        ("", "empty"),
        ("<>", "empty"),
        ("a@b.org\r\nRCPT TO:<x@y.org>", "CR is not allowed"),
        ("a@b.org\n", "LF is not allowed"),
        ("a\0@b.org", "NUL is not allowed"),
    ],
)
def test_invalid_addresses(address: str, fragment: str) -> None:
    with pytest.raises(LocalProtocolError, match=fragment.replace("(", r"\(")):
        Rcpt(address)


def test_null_sender_only_for_mail() -> None:
    assert Mail("<>").path == ""
    with pytest.raises(LocalProtocolError):
        Rcpt("<>")
    with pytest.raises(LocalProtocolError):
        Mail("postmaster")


def test_path_length() -> None:
    local = "a" * 64
    domain = ".".join(["b" * 60] * 3) + ".org"  # 187 octets
    assert validate_address(f"{local}@{domain}")
    with pytest.raises(LocalProtocolError, match="path longer than 256"):
        validate_address(f"{local}@{'c' * 63}.{domain}")


@pytest.mark.parametrize(
    "param,fragment",
    [
        ("SIZE 10", "invalid keyword"),
        ("-X=1", "invalid keyword"),
        ("SIZE=", "invalid value"),
        ("X=a=b", "invalid value"),
        ("X=a b", "invalid"),
        ("ENVID=a+zz", "invalid xtext"),
        ("ORCPT=nope", "addr-type;xtext"),
    ],
)
def test_bad_parameters(param: str, fragment: str) -> None:
    with pytest.raises(LocalProtocolError, match=fragment):
        Mail("a@b.org", (param,)) if not param.startswith("ORCPT") else Rcpt("a@b.org", (param,))


def test_duplicate_parameters() -> None:
    with pytest.raises(LocalProtocolError, match="given twice"):
        Mail("a@b.org", ("SIZE=1", "size=2"))


def test_parameters_parsed() -> None:
    mail = Mail("a@b.org", ("size=10", "BODY=8BITMIME", "SMTPUTF8", "ENVID=QQ+2B1"))
    assert mail.params == (("SIZE", "10"), ("BODY", "8BITMIME"), ("SMTPUTF8", None), ("ENVID", "QQ+2B1"))


def test_required_extensions() -> None:
    assert Mail("a@b.org").required_extensions() == frozenset()
    assert Mail("a@b.org", ("SIZE=1",)).required_extensions() == {"SIZE"}
    assert Mail("a@b.org", ("BODY=8BITMIME",)).required_extensions() == {"8BITMIME"}
    assert Mail("a@b.org", ("BODY=BINARYMIME",)).required_extensions() == {"BINARYMIME", "CHUNKING"}
    assert Mail("a@b.org", ("BODY=7BIT",)).required_extensions() == frozenset()
    assert Mail("a@b.org", ("RET=FULL", "ENVID=x")).required_extensions() == {"DSN"}
    assert Mail("a@b.org", ("REQUIRETLS",)).required_extensions() == {"REQUIRETLS"}
    assert Mail("a@b.org", ("MT-PRIORITY=3",)).required_extensions() == {"MT-PRIORITY"}
    assert Mail("a@b.org", ("AUTH=<>",)).required_extensions() == {"AUTH"}
    assert Mail("josé@b.org").required_extensions() == {"SMTPUTF8"}
    assert Rcpt("a@b.org", ("NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a@b.org")).required_extensions() == {"DSN"}
    assert Rcpt("用户@例子.广告").required_extensions() == {"SMTPUTF8"}
    assert Rcpt("a@b.org", ("X-UNKNOWN=1",)).required_extensions() == frozenset()
    assert StartTLS().required_extensions() == {"STARTTLS"}
    assert Bdat(b"x").required_extensions() == {"CHUNKING"}
    assert Auth("PLAIN").required_extensions() == {"AUTH"}
    assert Vrfy("josé").required_extensions() == {"SMTPUTF8"}


def test_group_last() -> None:
    for cmd in (Ehlo("a.org"), Data(), Noop(), Quit(), StartTLS(), Auth("PLAIN"), Vrfy("x"), Help()):
        assert cmd.group_last
    for cmd in (Mail("a@b.org"), Rcpt("a@b.org"), Rset(), Bdat(b"")):
        assert not cmd.group_last


def test_trace_redacts_secrets() -> None:
    assert Auth("PLAIN", b"\0alice\0hunter2").trace() == "AUTH PLAIN <redacted>"
    assert Auth("LOGIN").trace() == "AUTH LOGIN"
    assert AuthResponse(b"hunter2").trace() == "<redacted>"
    assert AuthResponse(cancel=True).trace() == "*"
    assert "hunter2" not in repr(Auth("PLAIN", b"hunter2")) + repr(AuthResponse(b"hunter2"))
    assert Bdat(b"payload", last=True).trace() == "BDAT 7 LAST"


@given(st.binary(max_size=64))
def test_trace_never_shows_auth_data(secret: bytes) -> None:
    assert Auth("PLAIN", secret).trace() == "AUTH PLAIN <redacted>"
    assert AuthResponse(secret).trace() == "<redacted>"


@pytest.mark.parametrize("name", ["", "PLAIN LOGIN", "A" * 21, "PL@IN", "PLAIN\r\n"])
def test_bad_mechanism_names(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        Auth(name)


@given(st.text(max_size=40))
def test_xtext_roundtrip(value: str) -> None:
    encoded = xtext_encode(value)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert xtext_decode(encoded) == value


BUILDERS = [
    lambda s: Ehlo(f"a{s}.org"),
    lambda s: Helo(f"a{s}.org"),
    lambda s: Lhlo(f"a{s}.org"),
    lambda s: Mail(f"a{s}@b.org"),
    lambda s: Mail("a@b.org", (f"X-P=v{s}",)),
    lambda s: Rcpt(f"a@b{s}.org"),
    lambda s: Rcpt("a@b.org", (f"NOTIFY=SUCCESS{s}",)),
    lambda s: Noop(f"x{s}"),
    lambda s: Help(f"x{s}"),
    lambda s: Vrfy(f"x{s}"),
    lambda s: Expn(f"x{s}"),
    lambda s: RawCommand(f"XCMD {s}"),
    lambda s: parse_command(f"NOOP {s}"),
    lambda s: parse_command(b"MAIL", f"FROM:<a@b.org>{s}".encode()),
    lambda s: parse_command("RCPT", f"TO:<a{s}@b.org>"),
]


@given(
    st.sampled_from(range(len(BUILDERS))),
    st.text(alphabet="ab.-", max_size=5),
    st.sampled_from(["\r", "\n", "\0", "\r\n"]),
    st.text(alphabet="ab.-", max_size=5),
)
def test_cr_lf_nul_in_any_argument_is_refused(index: int, before: str, bad: str, after: str) -> None:
    with pytest.raises(LocalProtocolError):
        BUILDERS[index](before + bad + after)


def test_parse_command_gives_typed_commands() -> None:
    assert parse_command(b"MAIL", b"FROM:<a@b.org>", b"SIZE=10") == Mail("a@b.org", ("SIZE=10",))
    assert parse_command("mail from: <a@b.org>") == Mail("a@b.org")
    assert parse_command("RCPT TO:<x@y.org> NOTIFY=NEVER") == Rcpt("x@y.org", ("NOTIFY=NEVER",))
    assert parse_command("ehlo", "me.example") == Ehlo("me.example")
    assert parse_command(b"DATA") == Data()
    assert parse_command(b"RSET") == Rset()
    assert parse_command(b"QUIT") == Quit()
    assert parse_command(b"STARTTLS") == StartTLS()
    assert parse_command(b"NOOP") == Noop()
    assert parse_command(b"HELP") == Help()
    assert parse_command("VRFY", "alice") == Vrfy("alice")
    assert parse_command("AUTH PLAIN AHUAcA==") == Auth("PLAIN", b"\0u\0p")
    assert parse_command("AUTH LOGIN =") == Auth("LOGIN", b"")
    assert parse_command("XCLIENT NAME=x") == RawCommand("XCLIENT NAME=x")
    assert parse_command("XCLIENT NAME=x").verb == "XCLIENT"


@pytest.mark.parametrize(
    "args",
    [
        (b"MAIL", b"FROM:<Name <a@b.org>>"),
        (b"MAIL FROM:<a@b.org>x",),
        (b"RCPT", b"TO:<a b@c.org>"),
        (b"RCPT TO:a@b.org\r\nQUIT",),
        (b"DATA", b"extra"),
        (b"AUTH", b"PLAIN", b"!!notbase64"),
        (b"BDAT 10",),
        (b"\xff\xfe",),
        (b"",),
        (b"MAIL", b"TO:<a@b.org>"),
    ],
)
def test_parse_command_validates(args: tuple[bytes, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        parse_command(*args)


def test_validated_addresses_are_remembered_but_invalid_ones_are_not() -> None:
    from smtp_core import _commands

    assert validate_address("<cache@example.org>") == "cache@example.org"
    assert ("<cache@example.org>", False) in _commands._VALID_ADDRESSES
    for _ in range(2):  # refused every time, never remembered
        with pytest.raises(LocalProtocolError):
            validate_address("bad address@example.org")
    assert not any(key[0] == "bad address@example.org" for key in _commands._VALID_ADDRESSES)
    # The null path is valid only where allowed, whatever was validated before.
    assert validate_address("<>", allow_null=True) == ""
    with pytest.raises(LocalProtocolError):
        validate_address("<>")


def test_address_cache_stays_bounded() -> None:
    from smtp_core import _commands

    for index in range(3000):
        assert validate_address(f"user{index}@example.org") == f"user{index}@example.org"
    assert len(_commands._VALID_ADDRESSES) <= _commands._VALID_ADDRESSES_MAX


class _Tagged(str):
    """A str subclass that would format itself otherwise on the wire."""

    def __format__(self, spec: str) -> str:
        return "x@example.org>\r\nRCPT TO:<evil@example.org"


def test_str_subclasses_are_sent_as_their_characters() -> None:
    assert Rcpt(_Tagged("b@example.org")).to_bytes() == b"RCPT TO:<b@example.org>\r\n"
    assert Rcpt("b@example.org").to_bytes() == b"RCPT TO:<b@example.org>\r\n"  # not cached as the subclass
    assert Mail(_Tagged("<a@example.org>")).to_bytes() == b"MAIL FROM:<a@example.org>\r\n"
    assert Rcpt(_Tagged("postmaster")).to_bytes() == b"RCPT TO:<postmaster>\r\n"
    assert type(validate_address(_Tagged("c@example.org"))) is str


def test_a_command_line_with_cr_or_lf_is_never_serialised() -> None:
    """Whatever a command's text turns out to be, CR, LF and NUL never reach the wire."""

    class Smuggling(Noop):
        def _line(self) -> str:
            return "NOOP\r\nRSET"

    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        Smuggling().to_bytes()
