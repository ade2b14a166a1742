"""atheris target: the reply parser. Invariant: replies or RemoteProtocolError, nothing else."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from smtp_core import RemoteProtocolError, ReplyParser


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    parser = ReplyParser(max_line_length=256, max_reply_lines=16, max_buffer_size=4096)
    parser.parse_enhanced_codes = fdp.ConsumeBool()
    try:
        while fdp.remaining_bytes():
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64))
            parser.feed(chunk)
            while (reply := parser.next_reply()) is not None:
                assert 200 <= reply.code < 600
                assert 1 <= len(reply.lines) <= 16
                assert all(len(line) <= 256 for line in reply.lines)
    except RemoteProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
