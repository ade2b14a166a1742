"""The connection's state machine: one table of (state, trigger) -> state.

Triggers are either something the client sends (``SEND_*``) or the kind of a reply
the server gives (the others). A ``SEND_*`` trigger missing from a state's row is
illegal there and the connection raises ``LocalProtocolError``; a reply trigger
missing from a row leaves the state unchanged (for instance a failed MAIL whose
pipelined DATA is still awaiting its reply).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["State", "Trigger", "TRANSITIONS", "SEND_TRIGGERS", "transition"]


class State(enum.Enum):
    """Where the SMTP session stands, from the client's side."""

    # Members are singletons: identity hashing is exact, and much cheaper than
    # Enum's own __hash__ for the transition-table lookups made on every command.
    __hash__ = object.__hash__

    GREETING = "GREETING"  # connected, waiting for the server's greeting
    REJECTED = "REJECTED"  # the greeting refused service: only QUIT remains
    HELLO = "HELLO"  # EHLO/HELO needed (after the greeting and after STARTTLS)
    READY = "READY"  # session open, no mail transaction
    MAIL = "MAIL"  # MAIL sent
    RCPT = "RCPT"  # at least one RCPT sent: more RCPT, DATA or BDAT
    DATA = "DATA"  # DATA sent, waiting for 354
    CONTENT = "CONTENT"  # 354 received: sending message content
    BDAT = "BDAT"  # BDAT chunks being sent, the LAST one not yet
    AUTH = "AUTH"  # AUTH (or a response) sent, waiting for the reply
    AUTH_CHALLENGE = "AUTH_CHALLENGE"  # 334 received: a response is due
    STARTTLS = "STARTTLS"  # STARTTLS sent, waiting for 220
    TLS_HANDSHAKE = "TLS_HANDSHAKE"  # 220 received: the transport must start TLS
    QUIT = "QUIT"  # QUIT sent
    CLOSED = "CLOSED"  # the session is over
    ERROR = "ERROR"  # a protocol error happened: nothing more is possible


class Trigger(enum.Enum):
    """What moves the state machine."""

    # Members are singletons: identity hashing is exact, and much cheaper than
    # Enum's own __hash__ for the transition-table lookups made on every command.
    __hash__ = object.__hash__

    SEND_HELLO = "SEND_HELLO"  # EHLO, HELO, LHLO
    SEND_MAIL = "SEND_MAIL"
    SEND_RCPT = "SEND_RCPT"
    SEND_DATA = "SEND_DATA"
    SEND_CONTENT = "SEND_CONTENT"
    SEND_END_OF_DATA = "SEND_END_OF_DATA"
    SEND_BDAT = "SEND_BDAT"
    SEND_BDAT_LAST = "SEND_BDAT_LAST"
    SEND_RSET = "SEND_RSET"
    SEND_OTHER = "SEND_OTHER"  # NOOP, HELP, VRFY, EXPN, unknown commands: no state change
    SEND_AUTH = "SEND_AUTH"
    SEND_AUTH_RESPONSE = "SEND_AUTH_RESPONSE"
    SEND_STARTTLS = "SEND_STARTTLS"
    SEND_QUIT = "SEND_QUIT"
    TLS_ESTABLISHED = "TLS_ESTABLISHED"  # reported by the transport, not sent

    GREETING_OK = "GREETING_OK"
    GREETING_REFUSED = "GREETING_REFUSED"
    HELLO_OK = "HELLO_OK"
    HELLO_FAILED = "HELLO_FAILED"
    MAIL_FAILED = "MAIL_FAILED"
    DATA_GO_AHEAD = "DATA_GO_AHEAD"  # 354
    DATA_FAILED = "DATA_FAILED"
    BDAT_FAILED = "BDAT_FAILED"
    AUTH_CHALLENGE = "AUTH_CHALLENGE"  # 334
    AUTH_DONE = "AUTH_DONE"  # any final AUTH reply
    STARTTLS_GO_AHEAD = "STARTTLS_GO_AHEAD"  # 220
    STARTTLS_FAILED = "STARTTLS_FAILED"
    QUIT_REPLY = "QUIT_REPLY"
    SERVICE_CLOSING = "SERVICE_CLOSING"  # 421 to anything, or unsolicited
    SERVER_CLOSED = "SERVER_CLOSED"  # EOF
    PROTOCOL_ERROR = "PROTOCOL_ERROR"


S = State
T = Trigger

SEND_TRIGGERS = frozenset(t for t in Trigger if t.name.startswith("SEND_")) | {T.TLS_ESTABLISHED}

_ANYTIME_CLOSE = {T.SERVICE_CLOSING: S.CLOSED, T.SERVER_CLOSED: S.CLOSED}
_QUIT = {T.SEND_QUIT: S.QUIT}

TRANSITIONS: Final[dict[State, dict[Trigger, State]]] = {
    S.GREETING: {T.GREETING_OK: S.HELLO, T.GREETING_REFUSED: S.REJECTED, **_ANYTIME_CLOSE},
    S.REJECTED: {**_QUIT, **_ANYTIME_CLOSE},
    S.HELLO: {
        T.SEND_HELLO: S.HELLO,
        T.HELLO_OK: S.READY,
        T.HELLO_FAILED: S.HELLO,
        T.SEND_RSET: S.HELLO,
        T.SEND_OTHER: S.HELLO,
        **_QUIT,
        **_ANYTIME_CLOSE,
    },
    S.READY: {
        T.SEND_HELLO: S.HELLO,
        T.SEND_MAIL: S.MAIL,
        T.SEND_RSET: S.READY,
        T.SEND_OTHER: S.READY,
        T.SEND_AUTH: S.AUTH,
        T.SEND_STARTTLS: S.STARTTLS,
        **_QUIT,
        **_ANYTIME_CLOSE,
    },
    S.MAIL: {
        T.SEND_HELLO: S.HELLO,  # EHLO may come at any time and resets (RFC 5321 4.1.4)
        T.SEND_RCPT: S.RCPT,
        T.SEND_RSET: S.READY,
        T.SEND_OTHER: S.MAIL,
        T.MAIL_FAILED: S.READY,
        **_QUIT,
        **_ANYTIME_CLOSE,
    },
    S.RCPT: {
        T.SEND_HELLO: S.HELLO,
        T.SEND_RCPT: S.RCPT,
        T.SEND_DATA: S.DATA,
        T.SEND_BDAT: S.BDAT,
        T.SEND_BDAT_LAST: S.READY,
        T.SEND_RSET: S.READY,
        T.SEND_OTHER: S.RCPT,
        T.MAIL_FAILED: S.READY,
        **_QUIT,
        **_ANYTIME_CLOSE,
    },
    S.DATA: {T.DATA_GO_AHEAD: S.CONTENT, T.DATA_FAILED: S.READY, **_ANYTIME_CLOSE},
    S.CONTENT: {T.SEND_CONTENT: S.CONTENT, T.SEND_END_OF_DATA: S.READY, **_ANYTIME_CLOSE},
    S.BDAT: {
        T.SEND_BDAT: S.BDAT,
        T.SEND_BDAT_LAST: S.READY,
        T.SEND_RSET: S.READY,
        T.BDAT_FAILED: S.READY,
        T.MAIL_FAILED: S.READY,
        **_QUIT,
        **_ANYTIME_CLOSE,
    },
    S.AUTH: {T.AUTH_CHALLENGE: S.AUTH_CHALLENGE, T.AUTH_DONE: S.READY, **_ANYTIME_CLOSE},
    S.AUTH_CHALLENGE: {T.SEND_AUTH_RESPONSE: S.AUTH, **_ANYTIME_CLOSE},
    S.STARTTLS: {
        T.STARTTLS_GO_AHEAD: S.TLS_HANDSHAKE,
        T.STARTTLS_FAILED: S.READY,
        **_ANYTIME_CLOSE,
    },
    S.TLS_HANDSHAKE: {T.TLS_ESTABLISHED: S.HELLO, **_ANYTIME_CLOSE},
    S.QUIT: {T.QUIT_REPLY: S.CLOSED, **_ANYTIME_CLOSE},
    S.CLOSED: {T.SERVER_CLOSED: S.CLOSED, T.SERVICE_CLOSING: S.CLOSED},
    S.ERROR: {},
}


def transition(state: State, trigger: Trigger) -> State | None:
    """The state after ``trigger`` in ``state``, or None if the table has no entry.

    ``PROTOCOL_ERROR`` leads to ``ERROR`` from every state.
    """
    if trigger is T.PROTOCOL_ERROR:
        return S.ERROR
    return TRANSITIONS[state].get(trigger)
