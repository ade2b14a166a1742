"""mail_pipeline, driven without a network by a model server that answers what it has read."""

from __future__ import annotations

from typing import Any

import pytest

from smtp_core import (
    ClientConnection,
    Outcome,
    SMTPDataError,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from smtp_core.flows import (
    Envelope,
    Flow,
    Read,
    Write,
    greeting,
    hello,
    mail_batch,
    mail_pipeline,
)


class ModelServer:
    """Parses the client's commands (BDAT payloads included) and queues one reply each."""

    def __init__(self, *, refuse_senders: tuple[str, ...] = (), refuse_content: tuple[bytes, ...] = ()) -> None:
        self.buffer = b""
        self.replies: list[bytes] = []
        self.transactions = 0  # complete transactions read (BDAT LAST or end of data)
        self.refuse_senders = refuse_senders
        self.refuse_content = refuse_content
        self.in_data = False
        self.sender_ok = False
        self.content = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.content, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
                self.in_data = False
                self._finish(self.content)
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            verb = line.split(b" ")[0].upper()
            if verb == b"BDAT":
                size = int(line.split()[1])
                if len(rest) < size:
                    return
                payload, self.buffer = rest[:size], rest[size:]
                if line.upper().endswith(b"LAST"):
                    self._finish(payload)
                else:
                    self.replies.append(b"250 chunk\r\n")
                continue
            self.buffer = rest
            if verb == b"MAIL":
                sender = line.split(b"<")[1].split(b">")[0].decode()
                self.sender_ok = sender not in self.refuse_senders
                self.replies.append(b"250 ok\r\n" if self.sender_ok else b"550 sender refused\r\n")
            elif verb == b"RCPT":
                self.replies.append(b"250 ok\r\n" if self.sender_ok else b"503 need MAIL\r\n")
            elif verb == b"DATA":
                self.in_data = self.sender_ok
                self.replies.append(b"354 go\r\n" if self.sender_ok else b"503 need MAIL\r\n")
            else:
                self.replies.append(b"250 ok\r\n")

    def _finish(self, content: bytes) -> None:
        self.transactions += 1
        if not self.sender_ok:
            self.replies.append(b"503 no valid recipients\r\n")
        elif any(marker in content for marker in self.refuse_content):
            self.replies.append(b"554 content refused\r\n")
        else:
            self.replies.append(f"250 queued {self.transactions}\r\n".encode())

    def answer(self) -> bytes:
        out, self.replies = b"".join(self.replies), []
        return out


def session(capabilities: list[str]) -> ClientConnection:
    conn = ClientConnection(local_hostname="client.test")
    ehlo = "".join(f"250{'-' if i < len(capabilities) else ' '}{line}\r\n" for i, line in enumerate(["smtp.test", *capabilities]))
    for flow, data in ((greeting(conn), b"220 hi\r\n"), (hello(conn), ehlo.encode())):
        drive(flow, lambda d=data: d)  # type: ignore[misc]
    return conn


def drive(flow: Flow[Any], on_read: Any, on_write: Any = None) -> Any:
    value: Any = None
    while True:
        try:
            request = flow.send(value)
        except StopIteration as stop:
            return stop.value
        value = None
        if isinstance(request, Write) and on_write is not None:
            on_write(request.data)
        elif isinstance(request, Read):
            value = on_read()


def envelopes(count: int, sender: str = "a@example.org") -> list[Envelope]:
    return [Envelope(sender, [f"r{i}@example.org"], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode()) for i in range(count)]


@pytest.mark.parametrize("window", [1, 2, 5])
def test_bdat_transactions_back_to_back_within_the_window(window: int) -> None:
    conn = session(["PIPELINING", "CHUNKING"])
    server = ModelServer()
    queue = envelopes(7)
    taken: list[Envelope] = []
    told: list[tuple[int, Any, int]] = []
    outstanding: list[int] = []

    def take() -> Envelope | None:
        if not queue:
            return None
        taken.append(queue.pop(0))
        return taken[-1]

    def finished(envelope: Envelope, outcome: Any) -> None:
        told.append((taken.index(envelope), outcome, server.transactions))

    def on_read() -> bytes:
        outstanding.append(server.transactions - len(told))
        return server.answer()

    drive(mail_pipeline(conn, take, finished, window=window), on_read, server.feed)
    assert [index for index, _, _ in told] == list(range(7))
    assert all(not isinstance(outcome, Exception) and outcome.outcome is Outcome.DONE for _, outcome, _ in told)
    assert [outcome.data_reply.message for _, outcome, _ in told] == [f"queued {i + 1}" for i in range(7)]
    # The window is filled before the client waits, and never exceeded.
    assert max(outstanding) == window
    assert not conn.pending


def test_bdat_pipeline_refused_sender_fails_only_that_message() -> None:
    conn = session(["PIPELINING", "CHUNKING"])
    server = ModelServer(refuse_senders=("bad@example.org",))
    batch = [*envelopes(1), *envelopes(1, "bad@example.org"), *envelopes(1)]
    outcomes = drive(mail_batch(conn, batch), server.answer, server.feed)
    assert outcomes[0].data_reply.message == "queued 1"
    assert isinstance(outcomes[1], SMTPSenderRefused) and outcomes[1].code == 550
    assert outcomes[1].outcome is Outcome.DONE
    assert outcomes[2].data_reply.message == "queued 3"


def test_data_pipeline_tells_each_outcome_when_its_reply_arrives() -> None:
    conn = session(["PIPELINING"])
    server = ModelServer(refuse_content=(b"body 1",))
    queue = envelopes(3)
    taken: list[Envelope] = []
    told: list[tuple[int, Any]] = []
    reads = 0

    def take() -> Envelope | None:
        if not queue:
            return None
        taken.append(queue.pop(0))
        return taken[-1]

    def finished(envelope: Envelope, outcome: Any) -> None:
        told.append((reads, outcome))

    def on_read() -> bytes:
        nonlocal reads
        reads += 1
        return server.answer()

    drive(mail_pipeline(conn, take, finished), on_read, server.feed)
    assert len(told) == 3
    assert isinstance(told[1][1], SMTPDataError) and told[1][1].outcome is Outcome.DONE
    assert told[0][1].data_reply is not None and told[2][1].data_reply is not None
    # Each was told right after the read that brought its final reply, before the next.
    assert [when for when, _ in told] == sorted(when for when, _ in told)
    assert told[0][0] < told[1][0] < told[2][0]


@pytest.mark.parametrize("capabilities", [["PIPELINING"], ["PIPELINING", "CHUNKING"]])
def test_session_end_tells_never_sent_from_unknown(capabilities: list[str]) -> None:
    conn = session(capabilities)
    chunking = "CHUNKING" in capabilities
    server = ModelServer()
    batch = envelopes(5)
    answered = b""

    def on_read() -> bytes:
        # The server answers up to the first message's final reply, then the connection drops.
        nonlocal answered
        if b"queued" in answered:
            return b""
        pending = server.answer()
        end = pending.find(b"queued")
        chunk = pending if end < 0 else pending[: pending.index(b"\r\n", end) + 2]
        answered += chunk
        return chunk

    outcomes = drive(mail_batch(conn, batch, window=3), on_read, server.feed)
    assert outcomes[0].data_reply.message == "queued 1"
    lost = outcomes[1:]
    assert all(isinstance(item, SMTPServerDisconnected) for item in lost)
    if chunking:
        # Messages 2 and 3 went out whole with the first, and 4 once the first was
        # answered (the window is 3); message 5 was never taken.
        assert [item.outcome for item in lost] == [Outcome.UNKNOWN] * 3 + [Outcome.NEVER_SENT]
    else:
        # Message 2's envelope went with the first's end, its content never; the
        # others were never taken.
        assert [item.outcome for item in lost] == [Outcome.NEVER_SENT] * 4
    assert all(item.content_started is (item.outcome is Outcome.UNKNOWN) for item in lost)
