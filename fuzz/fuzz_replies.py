"""atheris target: the reply parser (``harness.check_replies``).

Invariant: replies or RemoteProtocolError, nothing else, and the same replies however
the bytes are split. Run with fuzz/run.sh; the corpus is fuzz/corpus/replies.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import harness


def test_one_input(data: bytes) -> None:
    harness.check_replies(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
