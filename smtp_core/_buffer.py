"""The receive buffer: one growing byte buffer that remembers where it last searched."""

from __future__ import annotations

from typing import Final

__all__ = ["ReceiveBuffer"]

# A chunk of at most this many bytes, made of whole CRLF lines and arriving while
# nothing else is buffered (a reply, or a pipelined group of them: the usual read), is
# split into its lines at once, in one call. Bounded so that the lines it makes, an
# object each, cost a few kilobytes at most whatever the server sends.
_SPLIT_MAX: Final = 1024


class ReceiveBuffer:
    """Bytes received from the server and not yet consumed.

    Lines are extracted from the front. The buffer remembers how far it has already
    searched for a line ending, so feeding a reply one byte at a time costs linear
    time, not quadratic. Consumed bytes are dropped lazily, in amortised O(1).
    A short chunk of whole lines that arrives into an empty buffer is split at once
    (``_SPLIT_MAX``); its lines come before any bytes received after it.
    """

    __slots__ = ("_data", "_lines", "_next", "_searched", "_split_bytes", "_start")

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # offset of the first unconsumed byte
        self._searched = 0  # offset up to which no b"\n" exists
        self._lines: list[bytes] = []  # lines split at once, not yet extracted from _next
        self._next = 0
        self._split_bytes = 0  # bytes (line endings included) of those lines

    def __len__(self) -> int:
        return self._split_bytes + len(self._data) - self._start

    def __bool__(self) -> bool:
        return self._split_bytes > 0 or len(self._data) > self._start

    def append(self, data: bytes) -> None:
        """Add received bytes at the end."""
        size = len(data)
        if (
            size <= _SPLIT_MAX
            and self._split_bytes == 0
            and self._start >= len(self._data)
            and type(data) is bytes
            and data.endswith(b"\r\n")
        ):
            lines = data.split(b"\r\n")
            if len(lines) - 1 == data.count(b"\n"):  # CRLF only: no bare LF to honour
                lines.pop()  # what follows the last CRLF: nothing
                if self._data:
                    self._data.clear()
                    self._start = self._searched = 0
                self._lines = lines
                self._next = 0
                self._split_bytes = size
                return
        self._data += data

    def extract_line(self) -> bytes | None:
        """Remove and return the next line, without its line ending, or None if incomplete.

        A line ends with CRLF; a bare LF is also accepted as a line ending (a CR before
        it is stripped, a lone CR elsewhere is kept as data).
        """
        if self._split_bytes:
            index = self._next
            line = self._lines[index]
            self._split_bytes -= len(line) + 2
            if self._split_bytes:
                self._next = index + 1
            else:
                self._lines = []
                self._next = 0
            return line
        data = self._data
        start = self._start
        size = len(data)
        if start >= size:
            return None  # everything consumed: nothing to search (the usual last call)
        searched = self._searched
        end = data.find(b"\n", searched if searched > start else start)
        if end < 0:
            self._searched = size
            return None
        stop = end - 1 if end > start and data[end - 1] == 0x0D else end
        line = bytes(data[start:stop])
        start = end + 1
        if start > 4096 and start * 2 > size:
            del data[:start]
            start = 0
        self._start = start
        self._searched = start
        return line

    def _split_rest(self) -> bytes:
        if not self._split_bytes:
            return b""
        return b"".join([line + b"\r\n" for line in self._lines[self._next :]])

    def peek(self, size: int) -> bytes:
        """The first ``size`` unconsumed bytes, left in place."""
        head = self._split_rest()
        if len(head) >= size:
            return head[:size]
        return head + bytes(self._data[self._start : self._start + size - len(head)])

    def take_all(self) -> bytes:
        """Remove and return every buffered byte."""
        data = self._split_rest() + bytes(self._data[self._start :])
        self.clear()
        return data

    def clear(self) -> None:
        """Drop everything."""
        self._data.clear()
        self._start = 0
        self._searched = 0
        self._lines = []
        self._next = 0
        self._split_bytes = 0
