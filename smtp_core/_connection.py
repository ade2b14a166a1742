"""The SMTP client protocol machine: bytes in, events out; commands in, bytes out."""

from __future__ import annotations

from collections import deque
from typing import Final, Literal, NoReturn

from ._capabilities import NO_CAPABILITIES, Capabilities
from ._commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    Helo,
    Lhlo,
    Mail,
    Quit,
    Rcpt,
    Rset,
    StartTLS,
)
from ._content import DataEncoder, LineNormalizer
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    CommandReply,
    ConnectionClosed,
    Content,
    EndOfData,
    Event,
    Greeting,
)
from ._replies import Reply, ReplyParser
from ._state import TRANSITIONS, State, Trigger

__all__ = ["ClientConnection", "Sendable", "hello_command"]

Sendable = Command | Content | EndOfData
"""Anything :meth:`ClientConnection.send` accepts."""

_Pending = Command | EndOfData

# Module constants are Final: compiled code reads them without a dictionary lookup.
_HELLO: Final = (Ehlo, Helo, Lhlo)
_HELLO_TYPES: Final = frozenset(_HELLO)
_STARTS_TRANSACTION: Final = (Mail, Rset, *_HELLO)
_STARTS_TRANSACTION_TYPES: Final = frozenset(_STARTS_TRANSACTION)
_TRANSACTION_FAILURES: Final = frozenset(
    {Trigger.MAIL_FAILED, Trigger.BDAT_FAILED, Trigger.DATA_FAILED}
)
_CHECKED_COMMANDS: Final = 64  # commands whose extension check is remembered per connection


# Enum members read through their class cost a descriptor lookup each time (Python
# 3.11): the hot paths read the states they compare with from module constants.
_CLOSED: Final = State.CLOSED
_CONTENT: Final = State.CONTENT
_ERROR: Final = State.ERROR
_GREETING: Final = State.GREETING
_QUIT: Final = State.QUIT
_TLS_HANDSHAKE: Final = State.TLS_HANDSHAKE


class ClientConnection:
    """One SMTP client session, without any I/O.

    Feed the server's bytes to :meth:`receive_data` and collect events from
    :meth:`next_event`; turn commands into bytes with :meth:`send` and write them
    yourself. After STARTTLS's 220 reply, upgrade the transport and call
    :meth:`tls_established`.

    Keyword arguments:

    * ``local_hostname``: the name to announce in EHLO/HELO (default ``"localhost"``;
      the adapters pass the machine's fully qualified name).
    * ``max_line_length`` (8192): longest accepted reply line, in bytes.
    * ``max_reply_lines`` (128): most lines in one multi-line reply.
    * ``max_buffer_size`` (1 MiB): most bytes buffered and not yet parsed.
    * ``max_auth_rounds`` (8): most 334 challenges in one AUTH exchange.
    * ``bare_line_endings`` (``"normalize"``): bare CR and bare LF in message content
      become CRLF; ``"reject"`` raises :class:`LocalProtocolError` instead.
    * ``lmtp`` (False): speak LMTP (RFC 2033): LHLO instead of EHLO/HELO, and after the
      end of data one reply per accepted recipient (each a ``CommandReply`` for the
      ``EndOfData`` marker, in recipient order).

    Exceeding a limit raises :class:`RemoteProtocolError`. After any
    :class:`ProtocolError` from :meth:`send`, :meth:`next_event`,
    :meth:`receive_data` or :meth:`tls_established`, the state is ``ERROR`` for good.
    """

    def __init__(
        self,
        *,
        local_hostname: str | None = None,
        max_line_length: int = 8192,
        max_reply_lines: int = 128,
        max_buffer_size: int = 1024 * 1024,
        max_auth_rounds: int = 8,
        bare_line_endings: Literal["normalize", "reject"] = "normalize",
        lmtp: bool = False,
    ) -> None:
        if local_hostname is not None:
            hello_command(local_hostname)  # validates
        self.local_hostname = local_hostname or "localhost"
        self.max_auth_rounds = max_auth_rounds
        self.bare_line_endings: Literal["normalize", "reject"] = bare_line_endings
        self._parser = ReplyParser(
            max_line_length=max_line_length,
            max_reply_lines=max_reply_lines,
            max_buffer_size=max_buffer_size,
        )
        self._state = _GREETING
        self._pending: deque[_Pending] = deque()
        self._capabilities = NO_CAPABILITIES
        self._extended = False
        self._tls = False
        self._eof = False
        self._auth_rounds = 0
        self._encoder: DataEncoder | None = None
        self._normalizer: LineNormalizer | None = None
        self.lmtp = lmtp
        self._accepted_rcpts = 0
        self._content_started = False
        self._binary = False
        # Transaction-starting commands (MAIL, RSET, EHLO...) awaiting replies: while one
        # is, a failure reply belongs to an earlier transaction than the one being sent.
        self._pending_starts = 0
        # Commands whose extensions were checked against the current capabilities, by id.
        self._checked: dict[int, Command] = {}
        # What the reply next_reply() returned last answers: the greeting, or a command
        # (None: an unsolicited 421).
        self._answered_greeting = False
        self._answered: _Pending | None = None

    # -- properties ----------

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def capabilities(self) -> Capabilities:
        """What the last successful EHLO/LHLO advertised (empty before it and after HELO)."""
        return self._capabilities

    @property
    def extended(self) -> bool:
        """True when the session was opened with EHLO or LHLO (ESMTP), not HELO."""
        return self._extended

    @property
    def tls_active(self) -> bool:
        """True after :meth:`tls_established` (STARTTLS) or :meth:`mark_tls` (implicit TLS)."""
        return self._tls

    @property
    def content_started(self) -> bool:
        """True once the current transaction's content may have reached the server.

        Set by DATA's 354 reply or the first BDAT chunk; cleared by the next MAIL. A
        message whose content started must never be sent again after a failure (the
        server may have delivered it).
        """
        return self._content_started

    @property
    def pending(self) -> tuple[Command | EndOfData, ...]:
        """Commands sent and still awaiting their replies, oldest first."""
        return tuple(self._pending)

    @property
    def awaiting_replies(self) -> int:
        """How many replies are still expected (``len(pending)``, without the copy)."""
        return len(self._pending)

    @property
    def has_unparsed_input(self) -> bool:
        """True while received bytes, or the server's close, wait for :meth:`next_event`
        (False: ``next_event()`` would return ``NEED_DATA``, or raise a stored error)."""
        return self._eof or bool(self._parser.buffer)

    # -- receiving ----------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the server; ``b""`` means the server closed the connection."""
        if self._state is _ERROR:
            self._check_not_error()
        if not data:
            self._eof = True
            return
        if self._state is _CLOSED:
            return  # nothing more is expected; late bytes are ignored
        if self._state is _TLS_HANDSHAKE:
            self._fail(
                RemoteProtocolError(
                    "server sent data after the STARTTLS 220 reply, before TLS started "
                    "(possible response injection)"
                )
            )
        try:
            self._parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)

    def next_event(self) -> Event | type[NEED_DATA]:
        """Return the next event, or ``NEED_DATA`` when more bytes must be read first."""
        item = self.next_reply()
        if not isinstance(item, Reply):
            return item  # NEED_DATA or ConnectionClosed
        if self._answered_greeting:
            return Greeting(item)
        return CommandReply(self._answered, item)

    def next_reply(self) -> Reply | ConnectionClosed | type[NEED_DATA]:
        """:meth:`next_event` without the event around a reply: the reply itself.

        For callers that read only the reply (the flows): the command it answers is the
        oldest pending one, as in the :class:`CommandReply` that :meth:`next_event`
        would have returned. ``ConnectionClosed`` and ``NEED_DATA`` are as there.
        """
        if self._state is _ERROR:
            self._check_not_error()
        if self._state is _CLOSED and not self._parser.in_reply:
            if self._eof:
                return ConnectionClosed(expected=True)
            return NEED_DATA
        try:
            reply = self._parser.next_reply()
            if reply is not None:
                self._answered_greeting = self._state is _GREETING
                self._answered = self._handle_reply(reply)
                return reply
        except ProtocolError as exc:
            self._fail(exc)
        if self._eof:
            expected = self._state in (_QUIT, _CLOSED)
            self._apply(Trigger.SERVER_CLOSED)
            self._pending.clear()
            self._pending_starts = 0
            return ConnectionClosed(expected=expected)
        return NEED_DATA

    def _handle_reply(self, reply: Reply) -> _Pending | None:
        """Move the machine on for ``reply``; the command it answers (None for the
        greeting and an unsolicited 421)."""
        pending = self._pending
        code = reply.code
        if pending and code != 421 and self._state is not _GREETING:
            # The replies of a mail transaction first: they are the most frequent, and
            # a successful one moves nothing. (The only place they are handled.)
            command = pending[0]
            if isinstance(command, Rcpt):
                pending.popleft()
                if 200 <= code < 300:
                    self._accepted_rcpts += 1
                return command
            if isinstance(command, EndOfData):
                pending.popleft()
                return command
            if isinstance(command, Mail):
                pending.popleft()
                self._pending_starts -= 1
                if not 200 <= code < 300 and not self._pending_starts:
                    # A refusal of an earlier message's MAIL, which later pipelined
                    # commands already left behind, moves nothing.
                    self._apply(Trigger.MAIL_FAILED)
                return command
        if self._state is _GREETING:
            if code == 421:
                self._apply(Trigger.SERVICE_CLOSING)
            elif reply.is_success:
                self._apply(Trigger.GREETING_OK)
            elif code >= 400:
                self._apply(Trigger.GREETING_REFUSED)
            else:
                raise RemoteProtocolError(f"greeting has code {code}; expected 220")
            return None
        if not pending:
            if code == 421:
                self._apply(Trigger.SERVICE_CLOSING)
                return None
            raise RemoteProtocolError(
                f"unsolicited reply {code} {reply.message[:60]!r}: no command is awaiting one"
            )
        command = pending.popleft()
        if code == 421:
            pending.clear()
            self._pending_starts = 0
            self._apply(Trigger.SERVICE_CLOSING)
            return command
        if type(command) in _STARTS_TRANSACTION_TYPES:
            self._pending_starts -= 1
        trigger = self._reply_trigger(command, reply)
        if trigger is not None and (
            not self._pending_starts or trigger not in _TRANSACTION_FAILURES
        ):
            # A failure in a transaction that later pipelined commands already ended
            # (a refused MAIL, BDAT or DATA of an earlier message) moves nothing.
            self._apply(trigger)
        return command

    def _reply_trigger(self, command: _Pending, reply: Reply) -> Trigger | None:
        """The trigger of a reply to any command but MAIL, RCPT and the end of data
        (handled in :meth:`_handle_reply`)."""
        if isinstance(command, _HELLO):
            if not reply.is_success:
                return Trigger.HELLO_FAILED
            self._checked.clear()
            if isinstance(command, Helo):
                self._capabilities = NO_CAPABILITIES
                self._extended = False
            else:
                self._capabilities = Capabilities.from_ehlo_lines(reply.lines)
                self._extended = True
            self._parser.parse_enhanced_codes = self._capabilities.enhanced_status_codes
            return Trigger.HELLO_OK
        if isinstance(command, Data):
            if reply.code == 354:
                self._content_started = True
                self._encoder = DataEncoder(bare_line_endings=self.bare_line_endings)
                return Trigger.DATA_GO_AHEAD
            return Trigger.DATA_FAILED
        if isinstance(command, Bdat):
            return None if reply.is_success else Trigger.BDAT_FAILED
        if isinstance(command, (Auth, AuthResponse)):
            if reply.code == 334:
                self._auth_rounds += 1
                if self._auth_rounds > self.max_auth_rounds:
                    raise RemoteProtocolError(
                        f"server sent more than {self.max_auth_rounds} AUTH challenges "
                        "(max_auth_rounds)"
                    )
                return Trigger.AUTH_CHALLENGE
            return Trigger.AUTH_DONE
        if isinstance(command, StartTLS):
            if reply.code == 220:
                if self._parser.buffer:
                    raise RemoteProtocolError(
                        "server sent data after the STARTTLS 220 reply, before TLS started "
                        "(possible response injection)"
                    )
                return Trigger.STARTTLS_GO_AHEAD
            return Trigger.STARTTLS_FAILED
        if isinstance(command, Quit):
            return Trigger.QUIT_REPLY
        return None

    # -- sending ----------

    def send(self, item: Sendable) -> bytes:
        """Return the bytes to write for ``item`` and record it as awaiting a reply.

        Raises :class:`LocalProtocolError` when ``item`` is not allowed now: wrong
        state, an unanswered command that PIPELINING rules say must come first, or an
        extension the server did not advertise.
        """
        state = self._state
        if state is _ERROR:
            self._check_not_error()
        try:
            if state is _CONTENT and isinstance(item, Content):
                # The content of a large message comes in many pieces: no table lookups.
                assert self._encoder is not None
                return self._encoder.encode(item.data)
            trigger = _TRIGGER_BY_TYPE.get(type(item)) or self._send_trigger(item)
            new_state = TRANSITIONS[state].get(trigger)
            if new_state is None:
                raise LocalProtocolError(f"cannot send {_name(item)} in state {state.name}")
            pending = self._pending
            if not pending and self._parser.buffer:
                # Bytes that arrived while nothing was awaiting a reply would otherwise be
                # taken as the reply to this command (or, before the end of the message
                # data, as the message's final reply).
                raise RemoteProtocolError(
                    f"server sent unsolicited data before {_name(item)}: "
                    f"{bytes(self._parser.buffer.peek(40))!r}"
                )
            if type(item) is Rcpt or type(item) is Data:
                # The envelope's commands, the most frequent after content.
                if pending:
                    self._check_pipelining(item)
                data = self._checked_bytes(item)
                pending.append(item)
                self._state = new_state
                return data
            return self._send(item, new_state)
        except ProtocolError as exc:
            self._fail(exc)

    def _checked_bytes(self, command: Command) -> bytes:
        """The command's bytes, once the server's extensions allow it.

        A program sending many messages sends the same (immutable) commands again: each
        one's check is remembered until the capabilities change.
        """
        checked = self._checked
        if checked.get(id(command)) is not command:
            self._check_extensions(command)
            if len(checked) >= _CHECKED_COMMANDS:
                checked.clear()
            checked[id(command)] = command
        return command.to_bytes()

    def _send(self, item: Sendable, new_state: State) -> bytes:
        if isinstance(item, Content):
            assert self._encoder is not None
            self._state = new_state
            return self._encoder.encode(item.data)
        if isinstance(item, EndOfData):
            assert self._encoder is not None
            data = self._encoder.finish()
            self._encoder = None
            self._pending.extend([item] * self._replies_after_content())
            self._state = new_state
            return data
        if type(item) in _HELLO_TYPES and isinstance(item, Lhlo) != self.lmtp:
            raise LocalProtocolError(
                f"cannot send {_name(item)} on an {'LMTP' if self.lmtp else 'SMTP'} connection"
            )
        if self._pending:
            self._check_pipelining(item)
        if isinstance(item, Bdat):
            self._check_extensions(item)
            self._content_started = True
            if self._binary:
                payload = item.payload  # BODY=BINARYMIME: octets exactly as given
            else:
                if self._normalizer is None:
                    self._normalizer = LineNormalizer(bare_line_endings=self.bare_line_endings)
                payload = self._normalizer.feed(item.payload)
                if item.last:
                    payload += self._normalizer.flush()
                    self._normalizer = None
            item = Bdat(payload, last=item.last)
            data = item.to_bytes()
            self._pending.extend([item] * (self._replies_after_content() if item.last else 1))
        else:
            data = self._checked_bytes(item)
            self._pending.append(item)
            if isinstance(item, _STARTS_TRANSACTION):
                self._pending_starts += 1
                self._normalizer = None
                self._accepted_rcpts = 0
                self._content_started = False
                self._binary = isinstance(item, Mail) and bool(item.params) and _binarymime(item)
            elif isinstance(item, Auth):
                self._auth_rounds = 0
        self._state = new_state
        return data

    def _replies_after_content(self) -> int:
        """One reply after the content; in LMTP one per accepted recipient (RFC 2033)."""
        if not self.lmtp:
            return 1
        if self._pending:
            raise LocalProtocolError(
                "LMTP: the end of data needs every RCPT reply first, to know how many "
                "replies follow it"
            )
        return max(1, self._accepted_rcpts)

    def _send_trigger(self, item: Sendable) -> Trigger:
        """The trigger of an item whose exact type ``_TRIGGER_BY_TYPE`` does not name."""
        if isinstance(item, Content):
            return Trigger.SEND_CONTENT
        if isinstance(item, EndOfData):
            return Trigger.SEND_END_OF_DATA
        if isinstance(item, _HELLO):
            return Trigger.SEND_HELLO
        if isinstance(item, Bdat):
            return Trigger.SEND_BDAT_LAST if item.last else Trigger.SEND_BDAT
        for cls, trigger in _SEND_TRIGGERS:
            if isinstance(item, cls):
                return trigger
        return Trigger.SEND_OTHER

    def _check_pipelining(self, item: Command) -> None:
        waiting = self._pending[-1]
        if not self._capabilities.pipelining:
            raise LocalProtocolError(
                f"cannot send {_name(item)} before the reply to {_name(waiting)}: "
                "the server did not advertise PIPELINING"
            )
        for command in self._pending:
            if isinstance(command, Command) and command.group_last:
                raise LocalProtocolError(
                    f"cannot send {_name(item)} before the reply to {_name(command)}, "
                    "which must end a PIPELINING group (RFC 2920)"
                )

    def _check_extensions(self, command: Command) -> None:
        if isinstance(command, StartTLS) and self._tls:
            raise LocalProtocolError("cannot send STARTTLS: TLS is already active")
        required = command.required_extensions()
        if not required:
            return
        missing = sorted(ext for ext in required if ext not in self._capabilities)
        if missing:
            raise LocalProtocolError(
                f"cannot send {_name(command)}: the server did not advertise {', '.join(missing)}"
            )

    # -- TLS ------------------------------------------------------------------------

    def tls_established(self) -> None:
        """Report that the transport completed the TLS handshake after STARTTLS's 220.

        Everything learnt before TLS is forgotten: capabilities are cleared and EHLO
        must be sent again (RFC 3207 section 4.2).
        """
        self._check_not_error()
        if self._state is not _TLS_HANDSHAKE:
            self._fail(
                LocalProtocolError(
                    f"tls_established() called in state {self._state.name}, "
                    "not after a STARTTLS 220 reply"
                )
            )
        self._parser.buffer.clear()
        self._reset_session()
        self._tls = True
        self._apply(Trigger.TLS_ESTABLISHED)

    def mark_tls(self) -> None:
        """Record that the transport is TLS from the start (implicit TLS, port 465)."""
        self._checked.clear()  # STARTTLS is checked against it
        self._tls = True

    def _reset_session(self) -> None:
        self._checked.clear()
        self._capabilities = NO_CAPABILITIES
        self._extended = False
        self._parser.parse_enhanced_codes = False

    # -- internals ----------

    def _apply(self, trigger: Trigger) -> None:
        # transition() without its PROTOCOL_ERROR case: errors go through _fail().
        new_state = TRANSITIONS[self._state].get(trigger)
        if new_state is not None:
            self._state = new_state

    def _check_not_error(self) -> None:
        if self._state is _ERROR:
            raise LocalProtocolError("the connection is in the ERROR state after a protocol error")

    def _fail(self, exc: ProtocolError) -> NoReturn:
        self._state = _ERROR
        self._pending.clear()
        self._pending_starts = 0
        raise exc


_HELLO_COMMANDS: Final[dict[str, Ehlo]] = {}
_CACHED_NAMES: Final = 16  # local host names whose EHLO is remembered


def hello_command(hostname: str) -> Ehlo:
    """``Ehlo(hostname)``, which checks the name (:class:`LocalProtocolError`), remembered:
    a program connects under one name, again and again, and the command never changes."""
    if type(hostname) is not str:
        return Ehlo(hostname)  # (a str subclass: checked as it is each time)
    command = _HELLO_COMMANDS.get(hostname)
    if command is None:
        command = Ehlo(hostname)
        if len(_HELLO_COMMANDS) >= _CACHED_NAMES:
            _HELLO_COMMANDS.clear()
        _HELLO_COMMANDS[hostname] = command
    return command


_SEND_TRIGGERS: Final[tuple[tuple[type[Command], Trigger], ...]] = (
    (Mail, Trigger.SEND_MAIL),
    (Rcpt, Trigger.SEND_RCPT),
    (Data, Trigger.SEND_DATA),
    (Rset, Trigger.SEND_RSET),
    (Auth, Trigger.SEND_AUTH),
    (AuthResponse, Trigger.SEND_AUTH_RESPONSE),
    (StartTLS, Trigger.SEND_STARTTLS),
    (Quit, Trigger.SEND_QUIT),
)


_TRIGGER_BY_TYPE: Final[dict[type, Trigger]] = {
    Content: Trigger.SEND_CONTENT,
    EndOfData: Trigger.SEND_END_OF_DATA,
    Ehlo: Trigger.SEND_HELLO,
    Helo: Trigger.SEND_HELLO,
    Lhlo: Trigger.SEND_HELLO,
    **dict(_SEND_TRIGGERS),
}


def _binarymime(mail: Mail) -> bool:
    """MAIL asks for BODY=BINARYMIME (RFC 3030): the content goes unaltered."""
    for key, value in mail.params:
        if key == "BODY" and (value or "").upper() == "BINARYMIME":
            return True
    return False


def _name(item: Sendable) -> str:
    if isinstance(item, Content):
        return "message content"
    if isinstance(item, EndOfData):
        return "the end of the message data"
    if isinstance(item, AuthResponse):
        return "an AUTH response"
    return item.verb or type(item).__name__
