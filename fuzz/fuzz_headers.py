"""atheris target: header injection through send_message (``harness.check_header``).

The input's first line picks the message class and flattening options, the rest is the
Subject. Invariant: refused with ValueError, or written byte for byte as the email
package writes it with a header block that parses back into the same headers. Run with
fuzz/run.sh; the corpus is fuzz/corpus/headers.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import harness


def test_one_input(data: bytes) -> None:
    harness.check_header(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
