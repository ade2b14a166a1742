"""One type per SMTP command, validated when built, serialised by ``to_bytes()``.

Every argument is checked when the command object is created, so a malformed
address or parameter raises :class:`LocalProtocolError` before any byte exists.
Nothing is ever "repaired" into a different value: input is accepted exactly as
given or refused with the reason.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._errors import LocalProtocolError
from ._native import caused_by, mypyc_attr

__all__ = [
    "Command",
    "Ehlo",
    "Helo",
    "Lhlo",
    "Mail",
    "Rcpt",
    "Data",
    "Bdat",
    "Rset",
    "Noop",
    "Quit",
    "Vrfy",
    "Expn",
    "Help",
    "StartTLS",
    "Auth",
    "AuthResponse",
    "RawCommand",
    "parse_command",
    "validate_address",
    "parameter_extensions",
    "validate_domain",
    "xtext_encode",
    "xtext_decode",
]

_NON_ASCII = "\x80-\U0010ffff"
_ATEXT = rf"A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_NON_ASCII}"
_DOT_STRING_RE = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_QUOTED_RE = re.compile(rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_NON_ASCII}]|\\[\x20-\x7e])*"\Z')
_LABEL = rf"[A-Za-z0-9_{_NON_ASCII}](?:[A-Za-z0-9_\-{_NON_ASCII}]*[A-Za-z0-9_{_NON_ASCII}])?"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_GENERAL_LITERAL_RE = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+\Z")
_KEYWORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_VALUE_RE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_NON_ASCII}]+\Z")
_XTEXT_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
_MECH_RE = re.compile(r"[A-Za-z0-9_-]{1,20}\Z")

_NOTHING: frozenset[str] = frozenset()
_SMTPUTF8: frozenset[str] = frozenset({"SMTPUTF8"})
_PARAM_EXTENSIONS: dict[str, frozenset[str]] = {
    "SIZE": frozenset({"SIZE"}),
    "SMTPUTF8": frozenset({"SMTPUTF8"}),
    "RET": frozenset({"DSN"}),
    "ENVID": frozenset({"DSN"}),
    "NOTIFY": frozenset({"DSN"}),
    "ORCPT": frozenset({"DSN"}),
    "REQUIRETLS": frozenset({"REQUIRETLS"}),
    "MT-PRIORITY": frozenset({"MT-PRIORITY"}),
    "AUTH": frozenset({"AUTH"}),
}


def _check_text(value: str, what: str) -> None:
    """Refuse CR, LF and NUL: they could end the command line early (injection)."""
    for char, name in (("\r", "CR"), ("\n", "LF"), ("\0", "NUL")):
        if char in value:
            raise LocalProtocolError(f"{what} {value!r}: {name} is not allowed")


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def validate_domain(domain: str, what: str = "domain") -> str:
    """Check an RFC 5321 Domain (U-labels allowed) or address literal; return it."""
    _check_text(domain, what)
    if not domain:
        raise LocalProtocolError(f"{what} is empty")
    if _utf8_len(domain) > 255:
        raise LocalProtocolError(f"{what} {domain[:40]!r}...: longer than 255 octets")
    if domain.startswith("["):
        if not domain.endswith("]"):
            raise LocalProtocolError(f"{what} {domain!r}: unterminated address literal")
        inner = domain[1:-1]
        if inner[:5].lower() == "ipv6:":
            try:
                ipaddress.IPv6Address(inner[5:])
            except ValueError:
                raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                    LocalProtocolError(f"{what} {domain!r}: invalid IPv6 literal"), None
                )
            return domain
        try:
            ipaddress.IPv4Address(inner)
            return domain
        except ValueError:
            pass
        if _GENERAL_LITERAL_RE.match(inner):
            return domain
        raise LocalProtocolError(f"{what} {domain!r}: invalid address literal")
    if _DOMAIN_RE.match(domain) is None:
        if any(char.isspace() for char in domain):
            reason = "whitespace is not allowed"
        elif ".." in domain or domain.startswith(".") or domain.endswith("."):
            reason = "empty label"
        elif any(label.startswith("-") or label.endswith("-") for label in domain.split(".")):
            reason = "a label may not start or end with a hyphen"
        else:
            reason = "not a valid domain name"
        raise LocalProtocolError(f"{what} {domain!r}: {reason}")
    return domain


def validate_address(address: Any, *, allow_null: bool = False) -> str:
    """Validate an RFC 5321 / RFC 6531 mailbox and return its path contents.

    ``address`` is ``local@domain`` or ``<local@domain>``. Display names, comments,
    source routes, whitespace and anything else are refused, never rewritten. With
    ``allow_null``, ``""`` and ``<>`` (the null reverse-path) are accepted.
    """
    if not isinstance(address, str):
        raise LocalProtocolError(f"address must be a str, not {type(address).__name__}")
    if type(address) is not str:
        # A str subclass could format itself differently on the wire (__format__):
        # only its characters count.
        address = str.__getitem__(address, slice(None))
    key = (address, allow_null)
    cached = _VALID_ADDRESSES.get(key)
    if cached is not None:
        return cached
    path = _validate_address(address, allow_null)
    if len(_VALID_ADDRESSES) >= _VALID_ADDRESSES_MAX:
        _VALID_ADDRESSES.clear()
    _VALID_ADDRESSES[key] = path
    return path


# Addresses already validated, with their paths: a program sending many messages
# repeats the same few senders and recipients. Only valid addresses are kept.
_VALID_ADDRESSES: dict[tuple[str, bool], str] = {}
_VALID_ADDRESSES_MAX = 1024


def _validate_address(address: str, allow_null: bool) -> str:
    _check_text(address, "address")
    inner = address
    if ("<" in address[1:] or ">" in address[:-1]) and not (
        address.startswith("<") and address.count("<") == 1 and address.count(">") == 1
    ):
        raise LocalProtocolError(
            f"address {address!r}: angle brackets inside the address (a display name? "
            "pass the bare address)"
        )
    if inner.startswith("<") or inner.endswith(">"):
        if not (inner.startswith("<") and inner.endswith(">") and len(inner) >= 2):
            raise LocalProtocolError(f"address {address!r}: unbalanced angle brackets")
        inner = inner[1:-1]
    if inner == "":
        if allow_null:
            return ""
        raise LocalProtocolError("address is empty (the null path <> is only valid for MAIL)")
    if "<" in inner or ">" in inner:
        raise LocalProtocolError(
            f"address {address!r}: angle brackets inside the address (a display name? "
            "pass the bare address)"
        )
    if inner.startswith("@"):
        raise LocalProtocolError(f"address {address!r}: source routes are not supported")
    local, at, domain = inner.rpartition("@")
    if not at:
        raise LocalProtocolError(f"address {address!r}: no '@' and domain")
    if not local:
        raise LocalProtocolError(f"address {address!r}: empty local part")
    if local.startswith('"'):
        if _QUOTED_RE.match(local) is None:
            raise LocalProtocolError(f"address {address!r}: invalid quoted local part")
    elif _DOT_STRING_RE.match(local) is None:
        if any(char.isspace() for char in local):
            reason = "space not allowed in an unquoted local part"
        elif "@" in local:
            reason = "more than one '@'"
        elif local.startswith(".") or local.endswith(".") or ".." in local:
            reason = "a dot may not start or end the local part or follow another dot"
        else:
            bad = sorted({c for c in local if not re.match(rf"[{_ATEXT}.]", c)})
            reason = f"character(s) {''.join(bad)!r} need a quoted local part"
        raise LocalProtocolError(f"address {address!r}: {reason}")
    if _utf8_len(local) > 64:
        raise LocalProtocolError(f"address {address!r}: local part longer than 64 octets")
    validate_domain(domain, f"address {address!r}: domain")
    if _utf8_len(inner) > 254:
        raise LocalProtocolError(f"address {address!r}: path longer than 256 octets")
    return inner


def xtext_encode(value: str) -> str:
    """RFC 3461 xtext: characters outside ``!``..``~``, ``+`` and ``=`` become ``+HH``."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext; malformed input raises LocalProtocolError."""
    if _XTEXT_RE.match(value) is None:
        raise LocalProtocolError(f"invalid xtext {value!r}")
    data = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "+":
            data.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            data.append(ord(value[i]))
            i += 1
    return data.decode("utf-8", "replace")


def _parse_params(parameters: Iterable[Any], what: str) -> tuple[tuple[str, str | None], ...]:
    parsed: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for param in parameters:
        if not isinstance(param, str):
            raise LocalProtocolError(f"{what} parameter must be a str, not {type(param).__name__}")
        _check_text(param, f"{what} parameter")
        keyword, eq, value = param.partition("=")
        if _KEYWORD_RE.match(keyword) is None:
            raise LocalProtocolError(f"{what} parameter {param!r}: invalid keyword")
        if eq and _VALUE_RE.match(value) is None:
            raise LocalProtocolError(
                f"{what} parameter {param!r}: invalid value (no spaces, '=' or control characters)"
            )
        upper = keyword.upper()
        if upper in seen:
            raise LocalProtocolError(f"{what} parameter {keyword!r} given twice")
        seen.add(upper)
        if upper == "ENVID" and eq:
            xtext_decode(value)
        if upper == "ORCPT" and eq:
            addr_type, semi, xtext = value.partition(";")
            if not semi or not addr_type:
                raise LocalProtocolError(f"ORCPT {value!r}: expected addr-type;xtext")
            xtext_decode(xtext)
        parsed.append((upper, value if eq else None))
    return tuple(parsed)


def parameter_extensions(parameters: Iterable[Any], what: str = "MAIL") -> frozenset[str]:
    """EHLO keywords the given ESMTP parameters need (validating them on the way)."""
    return frozenset(_param_extensions(_parse_params(parameters, what)))


def _param_extensions(params: tuple[tuple[str, str | None], ...]) -> set[str]:
    needed: set[str] = set()
    for keyword, value in params:
        if keyword == "BODY" and value is not None:
            upper = value.upper()
            if upper == "8BITMIME":
                needed.add("8BITMIME")
            elif upper == "BINARYMIME":
                needed |= {"BINARYMIME", "CHUNKING"}
        else:
            needed |= _PARAM_EXTENSIONS.get(keyword, frozenset())
        if value is not None and not value.isascii():
            needed.add("SMTPUTF8")
    return needed


# The commands are frozen dataclasses (equality, hash, repr, ``dataclasses.fields`` and
# ``replace``) whose ``__init__`` is written out: the generated one would run
# interpreted in the compiled build (see hatch_build.py), where ``object.__setattr__``
# on ``self`` in ``__init__`` is a plain store. Each validates its arguments before
# storing them.


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Command:
    """Base class of all commands."""

    verb: ClassVar[str] = ""
    group_last: ClassVar[bool] = True
    """True when RFC 2920 says the command must end a PIPELINING group."""
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self) -> None:
        object.__setattr__(self, "_wire", None)

    def to_bytes(self) -> bytes:
        """The command line as sent, ending with CRLF."""
        wire = self._wire
        if wire is None:
            line = self._line().encode("utf-8")
            # find(), not ``in``: a bytes ``in`` first tries its operand as an int, and
            # raises and clears a TypeError inside each time (CPython 3.11).
            if line.find(b"\r") >= 0 or line.find(b"\n") >= 0 or line.find(b"\0") >= 0:
                # Arguments are checked when the command is built; this catches anything
                # that changed on the way to the wire (a str subclass formatting itself).
                raise LocalProtocolError(f"{self.verb} command line holds CR, LF or NUL")
            # A command is immutable: a program sending many messages sends the same
            # MAIL and RCPT commands again (the client keeps recent ones).
            wire = line + b"\r\n"
            object.__setattr__(self, "_wire", wire)
        return wire

    def _line(self) -> str:
        return self.verb

    def trace(self) -> str:
        """The command for protocol logs, secrets redacted, without CRLF."""
        return self._line()

    def required_extensions(self) -> frozenset[str]:
        """Upper-case EHLO keywords the server must advertise for this command."""
        return _NOTHING


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class _Hello(Command):
    hostname: str

    def __init__(self, hostname: str) -> None:
        validate_domain(hostname, f"{self.verb} host name")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "hostname", hostname)

    def _line(self) -> str:
        return f"{self.verb} {self.hostname}"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Ehlo(_Hello):
    """EHLO (RFC 5321 4.1.1.1)."""

    verb: ClassVar[str] = "EHLO"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Helo(_Hello):
    """HELO (RFC 5321 4.1.1.1)."""

    verb: ClassVar[str] = "HELO"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Lhlo(_Hello):
    """LHLO (RFC 2033, LMTP)."""

    verb: ClassVar[str] = "LHLO"


def _parameter_tuple(parameters: Any) -> tuple[str, ...]:
    """The parameters as a tuple (a single str is one parameter)."""
    if isinstance(parameters, str):
        return (parameters,)
    return tuple(parameters)


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Mail(Command):
    """MAIL FROM:<sender> [parameters] (RFC 5321 4.1.1.2)."""

    sender: str
    parameters: tuple[str, ...] = ()
    advertised_only: bool = field(default=True, repr=False, compare=False)
    """False: send parameters whatever the server advertised (it answers them itself)."""
    params: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)
    path: str = field(init=False, repr=False, compare=False)
    """The reverse-path without angle brackets (``""`` for the null sender)."""

    verb: ClassVar[str] = "MAIL"
    group_last: ClassVar[bool] = False

    def __init__(
        self, sender: Any, parameters: Iterable[str] = (), advertised_only: bool = True
    ) -> None:
        path = validate_address(sender, allow_null=True)
        checked = _parameter_tuple(parameters)
        params = _parse_params(checked, "MAIL")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "parameters", checked)
        object.__setattr__(self, "advertised_only", advertised_only)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "path", path)

    @property
    def requires_smtputf8(self) -> bool:
        """True if the address or a parameter value is not ASCII."""
        return not self.sender.isascii() or not all(p.isascii() for p in self.parameters)

    def with_parameters(self, parameters: Iterable[str]) -> Mail:
        """The same sender with other parameters (validated as a new command)."""
        return Mail(self.sender, tuple(parameters), advertised_only=self.advertised_only)

    def _line(self) -> str:
        return " ".join([f"MAIL FROM:<{self.path}>", *self.parameters])

    def required_extensions(self) -> frozenset[str]:
        if not self.params and self.sender.isascii():
            return _NOTHING
        if not self.advertised_only:
            return _NOTHING if self.sender.isascii() else _SMTPUTF8
        needed = _param_extensions(self.params)
        if not self.sender.isascii():
            needed.add("SMTPUTF8")
        return frozenset(needed)


def _forward_path(recipient: Any) -> str:
    """RCPT's path: the address validated, or the special ``postmaster`` (RFC 5321)."""
    if isinstance(recipient, str):
        inner = str.__getitem__(recipient, slice(None))  # a plain str, as sent
        if inner.startswith("<") and inner.endswith(">"):
            inner = inner[1:-1]
        if inner.lower() == "postmaster":
            return inner
    return validate_address(recipient)


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Rcpt(Command):
    """RCPT TO:<recipient> [parameters] (RFC 5321 4.1.1.3)."""

    recipient: str
    parameters: tuple[str, ...] = ()
    advertised_only: bool = field(default=True, repr=False, compare=False)
    """False: send parameters whatever the server advertised (it answers them itself)."""
    params: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)
    path: str = field(init=False, repr=False, compare=False)
    """The forward-path without angle brackets."""

    verb: ClassVar[str] = "RCPT"
    group_last: ClassVar[bool] = False

    def __init__(
        self, recipient: Any, parameters: Iterable[str] = (), advertised_only: bool = True
    ) -> None:
        path = _forward_path(recipient)
        checked = _parameter_tuple(parameters)
        params = _parse_params(checked, "RCPT")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "recipient", recipient)
        object.__setattr__(self, "parameters", checked)
        object.__setattr__(self, "advertised_only", advertised_only)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "path", path)

    @property
    def requires_smtputf8(self) -> bool:
        """True if the address or a parameter value is not ASCII."""
        return not self.recipient.isascii() or not all(p.isascii() for p in self.parameters)

    def _line(self) -> str:
        return " ".join([f"RCPT TO:<{self.path}>", *self.parameters])

    def required_extensions(self) -> frozenset[str]:
        if not self.params and self.recipient.isascii():
            return _NOTHING
        if not self.advertised_only:
            return _NOTHING if self.recipient.isascii() else _SMTPUTF8
        needed = _param_extensions(self.params)
        if not self.recipient.isascii():
            needed.add("SMTPUTF8")
        return frozenset(needed)


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Data(Command):
    """DATA (RFC 5321 4.1.1.4); the content follows the 354 reply."""

    verb: ClassVar[str] = "DATA"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Bdat(Command):
    """BDAT <size> [LAST] followed by the payload (RFC 3030 CHUNKING)."""

    payload: bytes = b""
    last: bool = False

    verb: ClassVar[str] = "BDAT"
    group_last: ClassVar[bool] = False

    def __init__(self, payload: Any = b"", last: bool = False) -> None:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise LocalProtocolError("BDAT payload must be bytes")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "payload", bytes(payload))
        object.__setattr__(self, "last", last)

    def _line(self) -> str:
        return f"BDAT {len(self.payload)}" + (" LAST" if self.last else "")

    def to_bytes(self) -> bytes:
        return self._line().encode("ascii") + b"\r\n" + self.payload

    def required_extensions(self) -> frozenset[str]:
        return frozenset({"CHUNKING"})


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Rset(Command):
    """RSET (RFC 5321 4.1.1.5)."""

    verb: ClassVar[str] = "RSET"
    group_last: ClassVar[bool] = False


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Quit(Command):
    """QUIT (RFC 5321 4.1.1.10)."""

    verb: ClassVar[str] = "QUIT"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class StartTLS(Command):
    """STARTTLS (RFC 3207)."""

    verb: ClassVar[str] = "STARTTLS"

    def required_extensions(self) -> frozenset[str]:
        return frozenset({"STARTTLS"})


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class _OptionalArgument(Command):
    argument: str | None = None

    def __init__(self, argument: Any = None) -> None:
        if argument is not None:
            _check_text(argument, f"{self.verb} argument")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "argument", argument)

    def _line(self) -> str:
        return self.verb if not self.argument else f"{self.verb} {self.argument}"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Noop(_OptionalArgument):
    """NOOP (RFC 5321 4.1.1.9)."""

    verb: ClassVar[str] = "NOOP"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Help(_OptionalArgument):
    """HELP (RFC 5321 4.1.1.8)."""

    verb: ClassVar[str] = "HELP"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class _Query(Command):
    argument: str

    def __init__(self, argument: Any) -> None:
        _check_text(argument, f"{self.verb} argument")
        if not argument.strip():
            raise LocalProtocolError(f"{self.verb} needs an argument")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "argument", argument)

    def _line(self) -> str:
        return f"{self.verb} {self.argument}"

    def required_extensions(self) -> frozenset[str]:
        return frozenset() if self.argument.isascii() else frozenset({"SMTPUTF8"})


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Vrfy(_Query):
    """VRFY (RFC 5321 4.1.1.6)."""

    verb: ClassVar[str] = "VRFY"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Expn(_Query):
    """EXPN (RFC 5321 4.1.1.7)."""

    verb: ClassVar[str] = "EXPN"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class Auth(Command):
    """AUTH <mechanism> [initial-response] (RFC 4954); an empty response is sent as ``=``."""

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)

    verb: ClassVar[str] = "AUTH"

    def __init__(self, mechanism: Any, initial_response: bytes | None = None) -> None:
        if not isinstance(mechanism, str) or _MECH_RE.match(mechanism) is None:
            raise LocalProtocolError(f"invalid SASL mechanism name {mechanism!r}")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "mechanism", mechanism)
        object.__setattr__(self, "initial_response", initial_response)

    def _line(self) -> str:
        line = f"AUTH {self.mechanism.upper()}"
        if self.initial_response is None:
            return line
        encoded = base64.b64encode(self.initial_response).decode("ascii")
        return f"{line} {encoded or '='}"

    def trace(self) -> str:
        line = f"AUTH {self.mechanism.upper()}"
        return line if self.initial_response is None else f"{line} <redacted>"

    def required_extensions(self) -> frozenset[str]:
        return frozenset({"AUTH"})


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class AuthResponse(Command):
    """A response to a 334 AUTH challenge, base64-encoded; ``cancel`` sends ``*``."""

    data: bytes = field(default=b"", repr=False)
    cancel: bool = False

    def __init__(self, data: bytes = b"", cancel: bool = False) -> None:
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "cancel", cancel)

    def _line(self) -> str:
        return "*" if self.cancel else base64.b64encode(self.data).decode("ascii")

    def trace(self) -> str:
        return "*" if self.cancel else "<redacted>"


@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True, init=False)
class RawCommand(Command):
    """A command line this library has no type for (sent as given, after validation)."""

    line: str

    def __init__(self, line: Any) -> None:
        if not isinstance(line, str):
            raise LocalProtocolError("command line must be a str")
        _check_text(line, "command line")
        if not line.strip():
            raise LocalProtocolError("command line is empty")
        object.__setattr__(self, "_wire", None)
        object.__setattr__(self, "line", line)

    @property
    def verb(self) -> str:  # type: ignore[override]
        """The first word, upper-cased."""
        return self.line.split(None, 1)[0].upper()

    def _line(self) -> str:
        return self.line


def _decode_arg(arg: Any) -> str:
    if isinstance(arg, str):
        return arg
    try:
        return bytes(arg).decode("utf-8")
    except UnicodeDecodeError:
        raise caused_by(  # noqa: B904 - mypyc ignores ``from``
            LocalProtocolError(f"command argument {arg!r} is not valid UTF-8"), None
        )


def _split_path(rest: str, keyword: str, line: str) -> tuple[str, tuple[str, ...]]:
    if rest[: len(keyword)].upper() != keyword:
        raise LocalProtocolError(f"command {line!r}: expected {keyword}")
    rest = rest[len(keyword) :].lstrip(" ")
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            raise LocalProtocolError(f"command {line!r}: unterminated <path>")
        path, params = rest[: end + 1], rest[end + 1 :]
        if params and not params.startswith(" "):
            raise LocalProtocolError(f"command {line!r}: text after the path")
    else:
        path, _, params = rest.partition(" ")
    if path.startswith("<") and path.endswith(">"):
        path = path[1:-1]
    return path, tuple(params.split())


def parse_command(*args: str | bytes) -> Command:
    """Build the command for a line given as words (aiosmtplib's ``execute_command``).

    Known verbs give their typed command, validated the same way; others give a
    :class:`RawCommand`.
    """
    words = [_decode_arg(arg) for arg in args]
    line = " ".join(words)
    _check_text(line, "command line")
    if not line.strip():
        raise LocalProtocolError("command line is empty")
    verb, _, rest = line.strip().partition(" ")
    verb = verb.upper()
    rest = rest.strip()
    if verb in ("EHLO", "HELO", "LHLO"):
        cls = {"EHLO": Ehlo, "HELO": Helo, "LHLO": Lhlo}[verb]
        return cls(rest)
    if verb == "MAIL":
        sender, params = _split_path(rest, "FROM:", line)
        return Mail(sender, params)
    if verb == "RCPT":
        recipient, params = _split_path(rest, "TO:", line)
        return Rcpt(recipient, params)
    simple: dict[str, type[Command]] = {
        "DATA": Data,
        "RSET": Rset,
        "QUIT": Quit,
        "STARTTLS": StartTLS,
    }
    if verb in simple:
        if rest:
            raise LocalProtocolError(f"{verb} takes no argument")
        return simple[verb]()
    if verb == "NOOP":
        return Noop(rest or None)
    if verb == "HELP":
        return Help(rest or None)
    if verb == "VRFY":
        return Vrfy(rest)
    if verb == "EXPN":
        return Expn(rest)
    if verb == "AUTH":
        mechanism, _, initial = rest.partition(" ")
        initial = initial.strip()
        if not initial:
            return Auth(mechanism)
        if initial == "=":
            return Auth(mechanism, b"")
        try:
            return Auth(mechanism, base64.b64decode(initial, validate=True))
        except (binascii.Error, ValueError):
            raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                LocalProtocolError(f"AUTH initial response {initial!r}: invalid base64"), None
            )
    if verb == "BDAT":
        raise LocalProtocolError("BDAT needs its payload: send a Bdat command")
    return RawCommand(line)
