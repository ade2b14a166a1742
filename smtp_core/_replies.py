"""Server replies and the incremental reply parser (RFC 5321 section 4.2, RFC 3463)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ._buffer import ReceiveBuffer
from ._errors import RemoteProtocolError

__all__ = ["EnhancedStatusCode", "Reply", "ReplyParser"]

_FIRST: Final = b"2345"
_CACHED_REPLIES: Final = 64  # distinct single-line replies remembered (of each kind below)
_CACHED_LINE_LENGTH: Final = 128  # longer lines are parsed every time (bounds the cache's memory)
_ENHANCED_RE = re.compile(rb"([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)")


# Replies and status codes are frozen dataclasses whose ``__init__`` is written out:
# the generated one would run interpreted in the compiled build (where
# ``object.__setattr__`` on ``self`` in ``__init__`` is a plain store).


@dataclass(frozen=True, slots=True, init=False)
class EnhancedStatusCode:
    """An RFC 3463 enhanced status code, ``class.subject.detail``, e.g. ``5.1.1``."""

    klass: int
    subject: int
    detail: int

    def __init__(self, klass: int, subject: int, detail: int) -> None:
        object.__setattr__(self, "klass", klass)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "detail", detail)

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


@dataclass(frozen=True, slots=True, init=False)
class Reply:
    """One complete server reply.

    ``lines`` holds the text of each line (after the code and separator), decoded
    from UTF-8 with undecodable bytes replaced, so reading a reply never raises.
    When the server advertised ENHANCEDSTATUSCODES, ``enhanced_codes`` holds the
    code parsed from each line (or None for a line without one); the text keeps it.
    """

    code: int
    lines: tuple[str, ...]
    enhanced_codes: tuple[EnhancedStatusCode | None, ...] = ()

    def __init__(
        self,
        code: int,
        lines: tuple[str, ...],
        enhanced_codes: tuple[EnhancedStatusCode | None, ...] = (),
    ) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "enhanced_codes", enhanced_codes)

    @property
    def message(self) -> str:
        """All lines joined with newlines, as aiosmtplib reports reply text."""
        return "\n".join(self.lines)

    @property
    def enhanced_status(self) -> EnhancedStatusCode | None:
        """The first enhanced status code in the reply, if any."""
        for code in self.enhanced_codes:
            if code is not None:
                return code
        return None

    @property
    def is_success(self) -> bool:
        """A 2xx reply."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """A 3xx reply (DATA's 354, AUTH's 334)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """A 4xx reply: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """A 5xx reply."""
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


# Single-line replies already parsed, by line: servers repeat the same few ("250 2.1.0
# Ok") on every connection, and a Reply is immutable. One cache for replies parsed with
# enhanced status codes and one for those parsed without.
_REPLIES_PLAIN: Final[dict[bytes, Reply]] = {}
_REPLIES_ENHANCED: Final[dict[bytes, Reply]] = {}


class ReplyParser:
    """Turns received bytes into :class:`Reply` objects, incrementally.

    Limits (each exceeded limit raises :class:`RemoteProtocolError`):

    * ``max_line_length``: bytes in one reply line, without its line ending;
    * ``max_reply_lines``: lines in one multi-line reply;
    * ``max_buffer_size``: bytes buffered and not yet parsed.
    """

    __slots__ = (
        "_buffer",
        "_code",
        "_enhanced",
        "_lines",
        "_parse_enhanced_codes",
        "_single_line_replies",
        "max_buffer_size",
        "max_line_length",
        "max_reply_lines",
    )

    def __init__(
        self,
        *,
        max_line_length: int = 8192,
        max_reply_lines: int = 128,
        max_buffer_size: int = 1024 * 1024,
    ) -> None:
        self._buffer = ReceiveBuffer()
        self._code: int | None = None
        self._lines: list[str] = []
        self._enhanced: list[EnhancedStatusCode | None] = []
        self.max_line_length = max_line_length
        self.max_reply_lines = max_reply_lines
        self.max_buffer_size = max_buffer_size
        self._parse_enhanced_codes = False
        self._single_line_replies = _REPLIES_PLAIN

    @property
    def parse_enhanced_codes(self) -> bool:
        """Whether each line's RFC 3463 code is parsed (the server sent ENHANCEDSTATUSCODES)."""
        return self._parse_enhanced_codes

    @parse_enhanced_codes.setter
    def parse_enhanced_codes(self, value: bool) -> None:
        self._single_line_replies = _REPLIES_ENHANCED if value else _REPLIES_PLAIN
        self._parse_enhanced_codes = value

    @property
    def buffer(self) -> ReceiveBuffer:
        """The receive buffer (bytes not yet parsed)."""
        return self._buffer

    @property
    def in_reply(self) -> bool:
        """True while part of a reply has been parsed (or bytes are buffered)."""
        return self._code is not None or bool(self._buffer)

    def feed(self, data: bytes) -> None:
        """Add bytes received from the server."""
        if len(self._buffer) + len(data) > self.max_buffer_size:
            raise RemoteProtocolError(
                f"server sent more than {self.max_buffer_size} bytes that were not yet "
                "consumed (max_buffer_size)"
            )
        self._buffer.append(data)

    def next_reply(self) -> Reply | None:
        """Parse and return the next complete reply, or None if more data is needed."""
        while True:
            raw = self._buffer.extract_line()
            if raw is None:
                # +1: the line's CR may already be here while its LF is not.
                if len(self._buffer) > self.max_line_length + 1:
                    raise RemoteProtocolError(
                        f"reply line longer than {self.max_line_length} bytes (max_line_length)"
                    )
                return None
            if len(raw) > self.max_line_length:
                raise RemoteProtocolError(
                    f"reply line longer than {self.max_line_length} bytes (max_line_length)"
                )
            if self._code is None:
                # Fast path: a whole single-line reply, parsed before (or now, once).
                cache = self._single_line_replies
                reply = cache.get(raw)
                if reply is not None:
                    return reply
                if raw[3:4] == b" " and raw[:3].isdigit() and raw[0] in _FIRST:
                    code = int(raw[:3])
                    text = raw[4:]
                    enhanced = (
                        (self._enhanced_code(code, text),) if self.parse_enhanced_codes else ()
                    )
                    reply = Reply(code, (text.decode("utf-8", "replace"),), enhanced)
                    if len(raw) <= _CACHED_LINE_LENGTH:
                        if len(cache) >= _CACHED_REPLIES:
                            cache.clear()
                        cache[raw] = reply
                    return reply
            code, last, text = self._split(raw)
            if self._code is None:
                self._code = code
            elif code != self._code:
                raise RemoteProtocolError(
                    f"continuation line has code {code}, the reply started with {self._code}"
                )
            if len(self._lines) >= self.max_reply_lines:
                raise RemoteProtocolError(
                    f"reply has more than {self.max_reply_lines} lines (max_reply_lines)"
                )
            self._lines.append(_decode(text))
            if self.parse_enhanced_codes:
                self._enhanced.append(self._enhanced_code(code, text))
            if last:
                reply = Reply(code, tuple(self._lines), tuple(self._enhanced))
                self._code = None
                self._lines = []
                self._enhanced = []
                return reply

    @staticmethod
    def _split(raw: bytes) -> tuple[int, bool, bytes]:
        if len(raw) < 3 or not raw[:3].isdigit():
            raise RemoteProtocolError(
                f"reply line does not start with a 3-digit code: {raw[:40]!r}"
            )
        if raw[0] not in b"2345":
            raise RemoteProtocolError(f"reply code {raw[:3].decode()} is outside 2xx-5xx")
        code = int(raw[:3])
        if len(raw) == 3:
            return code, True, b""
        sep = raw[3:4]
        if sep == b" ":
            return code, True, raw[4:]
        if sep == b"-":
            return code, False, raw[4:]
        raise RemoteProtocolError(
            f"reply code must be followed by a space, a hyphen or the line end: {raw[:40]!r}"
        )

    @staticmethod
    def _enhanced_code(code: int, text: bytes) -> EnhancedStatusCode | None:
        if not text[:1].isdigit():
            return None
        match = _ENHANCED_RE.match(text)
        if match is None or int(match.group(1)) != code // 100:
            return None
        return EnhancedStatusCode(int(match.group(1)), int(match.group(2)), int(match.group(3)))
