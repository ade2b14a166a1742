"""Typed options for SMTP extensions: DSN (RFC 3461), REQUIRETLS (RFC 8689), MT-PRIORITY (RFC 6710).

Each turns into validated MAIL/RCPT parameters (xtext-encoded where the RFC says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._commands import xtext_encode
from ._errors import LocalProtocolError

__all__ = ["DSN", "NOTIFY_VALUES", "priority_parameter"]

NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY", "NEVER"})


def _check_notify(values: Sequence[str]) -> tuple[str, ...]:
    notify = tuple(value.upper() for value in values)
    if not notify:
        raise LocalProtocolError("DSN notify needs at least one of SUCCESS, FAILURE, DELAY, NEVER")
    unknown = sorted(set(notify) - NOTIFY_VALUES)
    if unknown:
        raise LocalProtocolError(f"DSN notify: unknown value(s) {unknown}")
    if "NEVER" in notify and len(set(notify)) > 1:
        raise LocalProtocolError("DSN notify: NEVER cannot be combined with other values")
    return notify


@dataclass(frozen=True)
class DSN:
    """Delivery status notification options (RFC 3461).

    * ``ret``: ``"FULL"`` or ``"HDRS"``: what a bounce returns of the message.
    * ``envid``: an envelope identifier echoed in notifications (printable ASCII).
    * ``notify``: when to notify, for every recipient (``("FAILURE", "DELAY")``), or a
      mapping from recipient to its own list; ``("NEVER",)`` asks for none.
    * ``orcpt``: True to send each recipient as its original recipient
      (``ORCPT=rfc822;...``), or a mapping from recipient to its original address.

    Using DSN on a server that does not advertise it raises ``SMTPNotSupported``.
    """

    ret: str | None = None
    envid: str | None = None
    notify: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    orcpt: bool | Mapping[str, str] = False
    _notify: dict[str, tuple[str, ...]] | tuple[str, ...] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if self.ret is not None and self.ret.upper() not in ("FULL", "HDRS"):
            raise LocalProtocolError(f"DSN ret must be FULL or HDRS, not {self.ret!r}")
        if self.envid is not None:
            if not self.envid or len(self.envid) > 100:
                raise LocalProtocolError("DSN envid must be 1 to 100 characters")
            if not all(32 <= ord(char) < 127 for char in self.envid):
                raise LocalProtocolError(f"DSN envid {self.envid!r} must be printable ASCII")
        notify: dict[str, tuple[str, ...]] | tuple[str, ...] | None = None
        if isinstance(self.notify, Mapping):
            notify = {rcpt: _check_notify(values) for rcpt, values in self.notify.items()}
        elif self.notify is not None:
            if isinstance(self.notify, str):
                raise LocalProtocolError("DSN notify is a sequence such as ('FAILURE', 'DELAY')")
            notify = _check_notify(self.notify)
        object.__setattr__(self, "_notify", notify)
        if isinstance(self.orcpt, Mapping):
            for original in self.orcpt.values():
                if any(char in original for char in "\r\n\0"):
                    raise LocalProtocolError(f"DSN orcpt {original!r}: CR, LF or NUL")

    def mail_parameters(self) -> list[str]:
        """The MAIL parameters: RET and ENVID."""
        params = []
        if self.ret is not None:
            params.append(f"RET={self.ret.upper()}")
        if self.envid is not None:
            params.append(f"ENVID={xtext_encode(self.envid)}")
        return params

    def rcpt_parameters(self, recipient: str) -> list[str]:
        """The RCPT parameters for ``recipient``: NOTIFY and ORCPT."""
        params = []
        notify = self._notify
        values = notify.get(recipient) if isinstance(notify, dict) else notify
        if values:
            params.append("NOTIFY=" + ",".join(values))
        original: str | None = None
        if isinstance(self.orcpt, Mapping):
            original = self.orcpt.get(recipient)
        elif self.orcpt:
            original = recipient.removeprefix("<").removesuffix(">")
        if original is not None:
            if original.isascii():
                params.append(f"ORCPT=rfc822;{xtext_encode(original)}")
            else:
                params.append(f"ORCPT=utf-8;{_utf8_addr_xtext(original)}")
        return params


def _utf8_addr_xtext(address: str) -> str:
    """RFC 6533 utf-8-addr-xtext: non-printable characters and ``+ = \\`` as ``\\x{HEX}``."""
    return "".join(
        char if 0x21 <= ord(char) <= 0x7E and char not in "+=\\" else f"\\x{{{ord(char):X}}}"
        for char in address
    )


def priority_parameter(priority: int) -> str:
    """The MT-PRIORITY parameter (RFC 6710): an integer from -9 to 9."""
    if not isinstance(priority, int) or isinstance(priority, bool) or not -9 <= priority <= 9:
        raise LocalProtocolError(f"MT-PRIORITY must be an integer from -9 to 9, not {priority!r}")
    return f"MT-PRIORITY={priority}"
