"""The receive buffer: one growing byte buffer that remembers where it last searched."""

from __future__ import annotations

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Bytes received from the server and not yet consumed.

    Lines are extracted from the front. The buffer remembers how far it has already
    searched for a line ending, so feeding a reply one byte at a time costs linear
    time, not quadratic. Consumed bytes are dropped lazily, in amortised O(1).
    """

    __slots__ = ("_data", "_searched", "_start")

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # offset of the first unconsumed byte
        self._searched = 0  # offset up to which no b"\n" exists

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def append(self, data: bytes) -> None:
        """Add received bytes at the end."""
        self._data += data

    def pending_line_length(self) -> int:
        """Length of the incomplete line at the front (bytes without a line ending)."""
        return len(self._data) - self._start

    def extract_line(self) -> bytes | None:
        """Remove and return the next line, without its line ending, or None if incomplete.

        A line ends with CRLF; a bare LF is also accepted as a line ending (a CR before
        it is stripped, a lone CR elsewhere is kept as data).
        """
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

    def peek(self, size: int) -> bytes:
        """The first ``size`` unconsumed bytes, left in place."""
        return bytes(self._data[self._start : self._start + size])

    def take_all(self) -> bytes:
        """Remove and return every buffered byte."""
        data = bytes(self._data[self._start :])
        self.clear()
        return data

    def clear(self) -> None:
        """Drop everything."""
        self._data.clear()
        self._start = 0
        self._searched = 0
