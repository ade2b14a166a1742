"""A Hypothesis state machine: the client's flows against a model server that may answer anything.

Whatever the server says, the client raises only its documented exceptions, never
hangs (every read is answered or the stream ends), keeps its buffers bounded, and
ends in a state the documentation describes.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from smtp_core import ClientConnection, Plain, ProtocolError, SMTPException, State
from smtp_core._commands import Noop, Rset
from smtp_core._transaction import CONTENT_WRITE_SIZE
from smtp_core.flows import (
    Envelope,
    Flow,
    Read,
    UpgradeTLS,
    Write,
    authenticate,
    command,
    greeting,
    hello,
    mail_batch,
    mail_transaction,
    quit,
)

# One chunk, or two (BDAT sends content in chunks of this size).
contents = st.sampled_from([b".hi\r\n", b"x" * CONTENT_WRITE_SIZE + b"\r\n.tail\r\n"])

CODES = [220, 221, 235, 250, 251, 334, 354, 421, 450, 451, 500, 502, 503, 535, 550, 552, 554]
LIMIT = 4096

reply_line = st.builds(
    lambda code, sep, text: f"{code}{sep}{text}\r\n".encode(),
    st.sampled_from(CODES),
    st.sampled_from([" ", "-"]),
    st.sampled_from(
        ["ok", "PIPELINING", "CHUNKING", "AUTH PLAIN", "STARTTLS", "SIZE 10", "", "UGFzc3dvcmQ6", "5.1.1 no"]
    ),
)
server_bytes = st.one_of(
    st.lists(reply_line, min_size=1, max_size=5).map(b"".join),
    st.binary(max_size=64),
    st.just(b""),  # the server closes
)


class ClientAgainstAnyServer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = ClientConnection(local_hostname="client.test", max_buffer_size=LIMIT, max_line_length=256)
        self.closed = False

    def drive(self, data: st.DataObject, flow: Flow[Any]) -> None:
        value: Any = None
        reads = 0
        try:
            while True:
                try:
                    request = flow.send(value)
                except StopIteration:
                    return
                if isinstance(request, Write):
                    assert request.data
                    value = None
                elif isinstance(request, Read):
                    reads += 1
                    value = b"" if reads > 20 else data.draw(server_bytes)
                    if value == b"":
                        self.closed = True
                elif isinstance(request, UpgradeTLS):
                    value = None
        except ProtocolError:
            assert self.conn.state is State.ERROR or self.conn.state is not None
            self.closed = True
        except SMTPException:
            if self.conn.state in (State.CLOSED, State.ERROR):
                self.closed = True
        except ValueError:
            pass  # an argument the machine refused (e.g. MAIL with nothing to send): before any byte

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.drive(data, greeting(self.conn))

    @precondition(lambda self: self.closed or self.conn.state not in (State.READY, State.HELLO))
    @rule(data=st.data())
    def reconnect(self, data: st.DataObject) -> None:
        """After the session ended (or broke), a new connection starts from scratch."""
        assert self.conn.state not in (State.MAIL, State.RCPT, State.DATA, State.CONTENT) or self.closed
        self.conn = ClientConnection(local_hostname="client.test", max_buffer_size=LIMIT, max_line_length=256)
        self.closed = False
        self.drive(data, greeting(self.conn))

    @precondition(lambda self: not self.closed and self.conn.state is State.HELLO)
    @rule(data=st.data())
    def do_hello(self, data: st.DataObject) -> None:
        self.drive(data, hello(self.conn))

    @precondition(lambda self: not self.closed and self.conn.state is State.READY)
    @rule(data=st.data(), recipients=st.integers(1, 3))
    def send_mail(self, data: st.DataObject, recipients: int) -> None:
        rcpts = [f"r{i}@example.org" for i in range(recipients)]
        content = data.draw(contents)
        self.drive(data, mail_transaction(self.conn, "a@example.org", rcpts, content))

    @precondition(lambda self: not self.closed and self.conn.state is State.READY)
    @rule(data=st.data(), messages=st.integers(1, 3))
    def send_batch(self, data: st.DataObject, messages: int) -> None:
        envelopes = [
            Envelope("a@example.org", [f"r{i}@example.org" for i in range(1 + i % 2)], data.draw(contents))
            for i in range(messages)
        ]
        self.drive(data, mail_batch(self.conn, envelopes, quit_after=data.draw(st.booleans())))

    @precondition(lambda self: not self.closed and self.conn.state is State.QUIT)
    @rule(data=st.data())
    def finish_quit(self, data: st.DataObject) -> None:
        """QUIT went with the last message of a batch: read its reply."""
        self.drive(data, quit(self.conn))

    @precondition(lambda self: not self.closed and self.conn.state is State.READY)
    @rule(data=st.data())
    def login(self, data: st.DataObject) -> None:
        self.drive(data, authenticate(self.conn, Plain("u", "p")))

    @precondition(lambda self: not self.closed and self.conn.state in (State.READY, State.HELLO))
    @rule(data=st.data(), which=st.sampled_from(["noop", "rset", "quit"]))
    def simple(self, data: st.DataObject, which: str) -> None:
        flow = {"noop": command(self.conn, Noop()), "rset": command(self.conn, Rset()), "quit": quit(self.conn)}[which]
        self.drive(data, flow)

    @invariant()
    def bounded_and_consistent(self) -> None:
        assert len(self.conn._parser.buffer) <= LIMIT
        if self.conn.state in (State.READY, State.HELLO, State.MAIL, State.RCPT):
            # Between flows nothing may be left awaiting a reply unless the session broke.
            assert not self.conn.pending or self.closed


TestClientAgainstAnyServer = ClientAgainstAnyServer.TestCase
# SMTP_SANSIO_STATEFUL_EXAMPLES raises the number of runs for a long fuzzing session.
EXAMPLES = int(os.environ.get("SMTP_SANSIO_STATEFUL_EXAMPLES", "300"))
TestClientAgainstAnyServer.settings = settings(max_examples=EXAMPLES, stateful_step_count=15, deadline=None)
