"""The receive buffer: received bytes split into lines once, as they arrive."""

from __future__ import annotations

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Bytes received from the server and not yet consumed.

    Lines are extracted from the front. Each chunk that completes lines is split at
    its line endings in one pass when it arrives, so extracting a line is taking the
    next one from a list; the bytes after the last line ending wait as the incomplete
    line. Each received byte is searched once, so feeding a reply one byte at a time
    costs linear time, not quadratic.
    """

    __slots__ = ("_lines", "_next", "_size", "_tail")

    def __init__(self) -> None:
        self._lines: list[bytes] = []  # complete lines, without their LF (a CR kept)
        self._next = 0  # index in _lines of the first line not yet extracted
        self._tail = bytearray()  # after the last LF: the start of an incomplete line
        self._size = 0  # unconsumed bytes, line endings included

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def append(self, data: bytes) -> None:
        """Add received bytes at the end."""
        if b"\n" not in data:
            self._tail += data  # in place: no copy of the incomplete line
            self._size += len(data)
            return
        self._size += len(data)
        if self._tail:
            self._tail += data
            data = bytes(self._tail)
            self._tail.clear()
        elif type(data) is not bytes:
            data = bytes(data)  # lines are bytes, whatever the chunk was
        lines = data.split(b"\n")
        self._tail += lines.pop()
        held = self._lines
        if self._next >= len(held):
            self._lines = lines  # everything before was consumed: the usual case
            self._next = 0
            return
        if self._next * 2 >= len(held):
            del held[: self._next]  # drop consumed lines once they are half the list
            self._next = 0
        held += lines

    def pending_line_length(self) -> int:
        """Length of the incomplete line at the front (bytes without a line ending)."""
        return self._size

    def extract_line(self) -> bytes | None:
        """Remove and return the next line, without its line ending, or None if incomplete.

        A line ends with CRLF; a bare LF is also accepted as a line ending (a CR before
        it is stripped, a lone CR elsewhere is kept as data).
        """
        index = self._next
        lines = self._lines
        if index >= len(lines):
            return None
        line = lines[index]
        self._next = index + 1
        self._size -= len(line) + 1
        if line and line[-1] == 0x0D:
            return line[:-1]
        return line

    def _unconsumed(self) -> bytes:
        rest = self._lines[self._next :]
        data = b"\n".join(rest) + b"\n" if rest else b""
        return data + self._tail

    def peek(self, size: int) -> bytes:
        """The first ``size`` unconsumed bytes, left in place."""
        return self._unconsumed()[:size]

    def take_all(self) -> bytes:
        """Remove and return every buffered byte."""
        data = self._unconsumed()
        self.clear()
        return data

    def clear(self) -> None:
        """Drop everything."""
        self._lines = []
        self._next = 0
        self._tail = bytearray()
        self._size = 0
