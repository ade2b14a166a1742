"""atheris target: the whole ClientConnection fed arbitrary server bytes in arbitrary chunks.

The client side is scripted from the input too (which command to try next). Invariant:
only ProtocolError subclasses escape; after one, the state is ERROR.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from smtp_core import (
        NEED_DATA,
        Auth,
        AuthResponse,
        Bdat,
        ClientConnection,
        ConnectionClosed,
        Content,
        Data,
        Ehlo,
        EndOfData,
        Helo,
        Mail,
        Noop,
        ProtocolError,
        Quit,
        Rcpt,
        Rset,
        StartTLS,
        State,
    )

ITEMS = [
    Ehlo("client.test"),
    Helo("client.test"),
    Mail("a@example.org"),
    Rcpt("b@example.org"),
    Data(),
    Content(b".line\r\nx\r"),
    EndOfData(),
    Bdat(b"x\r\n"),
    Bdat(b"y", last=True),
    Rset(),
    Noop(),
    Auth("PLAIN", b"\0u\0p"),
    AuthResponse(b"x"),
    StartTLS(),
    Quit(),
]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    conn = ClientConnection(max_line_length=256, max_reply_lines=16, max_buffer_size=4096)
    try:
        while fdp.remaining_bytes():
            action = fdp.ConsumeIntInRange(0, 3)
            if action == 0:
                conn.send(ITEMS[fdp.ConsumeIntInRange(0, len(ITEMS) - 1)])
            elif action == 1 and conn.state is State.TLS_HANDSHAKE:
                conn.tls_established()
            else:
                chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
                conn.receive_data(chunk)
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, ConnectionClosed):
                        break
    except ProtocolError:
        assert conn.state is State.ERROR


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
