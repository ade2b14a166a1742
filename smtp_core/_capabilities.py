"""ESMTP capabilities parsed from an EHLO (or LHLO) reply (RFC 5321 section 4.1.1.1)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

__all__ = ["Capabilities"]

# The characters of an EHLO keyword after its first (RFC 5321: ALPHA / DIGIT / "-").
_KEYWORD_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_CACHED: Final = 32  # distinct EHLO replies whose capabilities are remembered
_CACHED_SIZE: Final = 4096  # characters: larger replies are parsed every time (bounds the memory)


class Capabilities(Mapping[str, str]):
    """The extensions a server advertised, keyed by upper-case EHLO keyword.

    The mapping's value is the keyword's parameter text (``""`` when it has none),
    kept raw, so extensions this library does not know are still visible. Keywords
    are matched case-insensitively: ``"pipelining" in caps`` works.

    Structured values: :attr:`size` (SIZE, RFC 1870) and :attr:`auth_mechanisms`
    (AUTH, RFC 4954, including the pre-standard ``AUTH=LOGIN PLAIN`` form).

    A ``Capabilities`` never changes once built (a server that sends the same EHLO
    reply again gets the same object back from :meth:`from_ehlo_lines`).
    """

    __slots__ = ("_auth", "_esmtp", "_items", "_server_name", "_size", "_unparsed")

    def __init__(self, lines: Iterable[str] = (), *, server_name: str = "") -> None:
        items: dict[str, str] = {}
        auth: list[str] = []
        unparsed: list[str] = []
        for line in lines:
            _parse_line(line, items, auth, unparsed)
        if auth:
            items["AUTH"] = " ".join(auth)
        self._items = items
        self._auth = tuple(auth)
        self._size = _parse_size(items.get("SIZE"))
        self._server_name = server_name
        self._unparsed = tuple(unparsed)
        self._esmtp: dict[str, str] | None = None

    @classmethod
    def from_ehlo_lines(cls, lines: Iterable[str]) -> Capabilities:
        """Build from all lines of a 250 EHLO reply (the first line names the server).

        A server answers every connection's EHLO alike: the capabilities of a reply
        seen lately are not parsed again.
        """
        key: tuple[str, ...] = lines if isinstance(lines, tuple) else tuple(lines)
        known = _PARSED.get(key)
        if known is not None:
            return known
        if not key:
            return cls()
        caps = cls(key[1:], server_name=key[0].split(" ", 1)[0])
        if sum(map(len, key)) <= _CACHED_SIZE:
            if len(_PARSED) >= _CACHED:
                _PARSED.clear()
            _PARSED[key] = caps
        return caps

    @property
    def server_name(self) -> str:
        """The name the server gave in the first line of its reply."""
        return self._server_name

    @property
    def unparsed(self) -> tuple[str, ...]:
        """Lines that are not an EHLO keyword (with or without parameters), as sent."""
        return self._unparsed

    def __getitem__(self, keyword: str) -> str:
        return self._items[keyword.upper()]

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Capabilities({self._items!r})"

    @property
    def size(self) -> int | None:
        """The server's message size limit (SIZE); None when absent or 0 (no fixed limit)."""
        return self._size or None

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """Upper-case SASL mechanism names from AUTH (and the old AUTH= form)."""
        return self._auth

    @property
    def pipelining(self) -> bool:
        """PIPELINING (RFC 2920) advertised."""
        return "PIPELINING" in self._items

    @property
    def chunking(self) -> bool:
        """CHUNKING (RFC 3030, BDAT) advertised."""
        return "CHUNKING" in self._items

    @property
    def smtputf8(self) -> bool:
        """SMTPUTF8 (RFC 6531) advertised."""
        return "SMTPUTF8" in self._items

    @property
    def eightbitmime(self) -> bool:
        """8BITMIME (RFC 6152) advertised."""
        return "8BITMIME" in self._items

    @property
    def starttls(self) -> bool:
        """STARTTLS (RFC 3207) advertised."""
        return "STARTTLS" in self._items

    @property
    def enhanced_status_codes(self) -> bool:
        """ENHANCEDSTATUSCODES (RFC 2034) advertised."""
        return "ENHANCEDSTATUSCODES" in self._items

    def as_esmtp_extensions(self) -> dict[str, str]:
        """The aiosmtplib ``esmtp_extensions`` view: lower-case keyword to parameters.

        A new dict each call (the caller may change it).
        """
        esmtp = self._esmtp
        if esmtp is None:
            esmtp = self._esmtp = {key.lower(): value for key, value in self._items.items()}
        return dict(esmtp)


_PARSED: Final[dict[tuple[str, ...], Capabilities]] = {}
"""Capabilities by the lines of the EHLO reply they were parsed from."""

def _parse_line(line: str, items: dict[str, str], auth: list[str], unparsed: list[str]) -> None:
    """One capability line: ``KEYWORD``, ``KEYWORD params`` or the old ``KEYWORD=params``.

    The keyword is a letter or digit, then letters, digits and hyphens; anything else
    (after stripping whitespace) is kept in ``unparsed``. AUTH's mechanisms from all
    its lines are merged, in order, without repeats; otherwise the first line of a
    keyword wins.
    """
    line = line.strip()
    if not line:
        return  # e.g. a bare "250 " last line
    space = line.find(" ")
    equals = line.find("=")
    end = space if equals < 0 or 0 <= space < equals else equals
    keyword = line if end < 0 else line[:end]
    if not keyword or keyword[0] == "-" or not _KEYWORD_CHARS.issuperset(keyword):
        unparsed.append(line)
        return
    keyword = keyword.upper()
    value = "" if end < 0 else line[end + 1 :].strip()
    if keyword == "AUTH":
        for mech in value.upper().split():
            if mech not in auth:
                auth.append(mech)
        items["AUTH"] = ""  # its place in the order; the merged list is set at the end
    elif keyword not in items:
        items[keyword] = value


def _parse_size(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        return int(value)
    return None


NO_CAPABILITIES: Final = Capabilities()
"""What a session knows before EHLO, and after HELO or STARTTLS (shared: it never changes)."""
