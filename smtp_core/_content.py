"""Message content for DATA (dot-stuffing, RFC 5321 4.5.2) and BDAT (RFC 3030).

Both encoders work chunk by chunk with ``bytes.replace`` (C speed), carry their
state across chunks, and keep memory bounded by the chunk size.
"""

from __future__ import annotations

from typing import Literal

from ._errors import LocalProtocolError

__all__ = [
    "DataEncoder",
    "LineNormalizer",
    "unstuff",
    "normalize_line_endings",
    "is_8bit",
    "line_ending_counts",
]

BareLineEndings = Literal["normalize", "reject"]


def normalize_line_endings(data: bytes) -> bytes:
    """Turn every bare CR and bare LF into CRLF (CRLF stays as it is)."""
    if not _has_bare_line_ending(data):
        return data  # the usual case: counting costs less than copying three times
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _has_bare_line_ending(data: bytes) -> bool:
    crlf, cr, lf = line_ending_counts(data)
    return cr != crlf or lf != crlf


_COUNTS_KEPT = 256 * 1024
"""Content up to this size has its counts kept (see :func:`line_ending_counts`)."""

_last_counts: tuple[bytes, int, int, int] | None = None


def line_ending_counts(data: bytes) -> tuple[int, int, int]:
    """How many CRLF, CR and LF ``data`` holds.

    The SIZE estimate and the encoder both need them for the same message: the counts
    of the last one (if not larger than ``_COUNTS_KEPT``) are kept, so that a message
    is scanned once, not twice. Bytes are immutable, so the same object has the same
    counts.
    """
    global _last_counts
    last = _last_counts
    if last is not None and last[0] is data:
        return last[1], last[2], last[3]
    crlf, cr, lf = data.count(b"\r\n"), data.count(b"\r"), data.count(b"\n")
    if type(data) is bytes and len(data) <= _COUNTS_KEPT:
        _last_counts = (data, crlf, cr, lf)
    return crlf, cr, lf


def is_8bit(data: bytes) -> bool:
    """True if any byte is >= 0x80."""
    return not data.isascii()


class LineNormalizer:
    """Normalises line endings to CRLF across chunks (for BDAT content).

    A CR at the end of a chunk is held back until the next chunk shows whether an
    LF follows it. With ``bare_line_endings="reject"`` a bare CR or LF raises
    :class:`LocalProtocolError` instead.
    """

    __slots__ = ("_held_cr", "_reject", "bytes_in", "bytes_out", "ends_with_newline")

    def __init__(self, *, bare_line_endings: BareLineEndings = "normalize") -> None:
        self._held_cr = False
        self._reject = bare_line_endings == "reject"
        self.ends_with_newline = True  # at the start of a line (nothing written yet)
        self.bytes_in = 0
        self.bytes_out = 0

    def feed(self, chunk: bytes) -> bytes:
        """Normalise one chunk; may hold back a trailing CR."""
        self.bytes_in += len(chunk)
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        if not chunk:
            return b""
        if self._reject:
            if _has_bare_line_ending(chunk):
                raise LocalProtocolError(
                    "message content has a bare CR or LF (bare_line_endings='reject')"
                )
            out = chunk
        else:
            out = normalize_line_endings(chunk)
        self.ends_with_newline = out.endswith(b"\n")
        self.bytes_out += len(out)
        return out

    def flush(self) -> bytes:
        """Emit a held-back CR (as CRLF, or raise in reject mode)."""
        if not self._held_cr:
            return b""
        self._held_cr = False
        if self._reject:
            raise LocalProtocolError(
                "message content ends with a bare CR (bare_line_endings='reject')"
            )
        self.ends_with_newline = True
        self.bytes_out += 2
        return b"\r\n"


class DataEncoder:
    """Encodes content for DATA: CRLF line endings, dot-stuffing, the terminator.

    No content can end the data early: the output holds ``CRLF.CRLF`` exactly once,
    at its end, and no bare CR or LF at all.
    """

    __slots__ = ("_finished", "_lines", "bytes_in", "bytes_out")

    def __init__(self, *, bare_line_endings: BareLineEndings = "normalize") -> None:
        self._lines = LineNormalizer(bare_line_endings=bare_line_endings)
        self._finished = False
        self.bytes_in = 0
        self.bytes_out = 0

    def _stuff(self, data: bytes, at_line_start: bool) -> bytes:
        if data.find(b"\n.") >= 0:  # find(), not ``in``: see _commands.Command.to_bytes
            data = data.replace(b"\n.", b"\n..")
        if at_line_start and data.startswith(b"."):
            data = b"." + data
        return data

    def encode(self, chunk: bytes) -> bytes:
        """Encode one chunk of content."""
        if self._finished:
            raise LocalProtocolError("message content already ended")
        self.bytes_in += len(chunk)
        at_line_start = self._lines.ends_with_newline
        out = self._stuff(self._lines.feed(chunk), at_line_start)
        self.bytes_out += len(out)
        return out

    def finish(self) -> bytes:
        """End the content: flush, add a final CRLF if missing, then ``.CRLF``."""
        if self._finished:
            raise LocalProtocolError("message content already ended")
        self._finished = True
        out = self._lines.flush()
        if not (out or self._lines.ends_with_newline):
            out = b"\r\n"
        out += b".\r\n"
        self.bytes_out += len(out)
        return out


def unstuff(data: bytes) -> bytes:
    """Invert :class:`DataEncoder`: strip the terminator and the stuffed dots.

    Raises ``ValueError`` if the terminator is missing or appears before the end.
    """
    if data == b".\r\n":
        return b""
    if not data.endswith(b"\r\n.\r\n"):
        raise ValueError("DATA content does not end with CRLF.CRLF")
    body = data[:-3]
    if body.find(b"\r\n.\r\n") >= 0 or body.startswith(b".\r\n"):
        raise ValueError("DATA content holds an early terminator")
    body = body.replace(b"\r\n..", b"\r\n.")
    if body.startswith(b".."):
        body = body[1:]
    return body
