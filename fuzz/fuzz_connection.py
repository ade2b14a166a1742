"""atheris target: the whole ClientConnection (``harness.check_connection``).

The input's first line is the client's script, the rest the server's bytes. Invariant:
only ProtocolError subclasses escape; after one, the state is ERROR for good. Run with
fuzz/run.sh; the corpus is fuzz/corpus/connection.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import harness


def test_one_input(data: bytes) -> None:
    harness.check_connection(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
