"""ESMTP capabilities parsed from an EHLO (or LHLO) reply (RFC 5321 section 4.1.1.1)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Capabilities"]

_KEYWORD_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?\Z", re.DOTALL)


class Capabilities(Mapping[str, str]):
    """The extensions a server advertised, keyed by upper-case EHLO keyword.

    The mapping's value is the keyword's parameter text (``""`` when it has none),
    kept raw, so extensions this library does not know are still visible. Keywords
    are matched case-insensitively: ``"pipelining" in caps`` works.

    Structured values: :attr:`size` (SIZE, RFC 1870) and :attr:`auth_mechanisms`
    (AUTH, RFC 4954, including the pre-standard ``AUTH=LOGIN PLAIN`` form).
    """

    __slots__ = ("_auth", "_items", "_size", "server_name", "unparsed")

    def __init__(self, lines: Iterable[str] = (), *, server_name: str = "") -> None:
        self._items: dict[str, str] = {}
        auth: list[str] = []
        self.server_name = server_name
        unparsed: list[str] = []
        for line in lines:
            line = line.strip()
            if not line:
                continue  # e.g. a bare "250 " last line
            match = _KEYWORD_RE.match(line)
            if match is None:
                unparsed.append(line)
                continue
            keyword = match.group(1).upper()
            value = (match.group(2) or "").strip()
            if keyword == "AUTH":
                for mech in value.upper().split():
                    if mech not in auth:
                        auth.append(mech)
                self._items["AUTH"] = " ".join(auth)
            elif keyword not in self._items:
                self._items[keyword] = value
        self._auth = tuple(auth)
        self._size = self._parse_size(self._items.get("SIZE"))
        self.unparsed = tuple(unparsed)

    @classmethod
    def from_ehlo_lines(cls, lines: Iterable[str]) -> Capabilities:
        """Build from all lines of a 250 EHLO reply (the first line names the server)."""
        lines = list(lines)
        if not lines:
            return cls()
        first, *rest = lines
        return cls(rest, server_name=first.split(" ", 1)[0])

    @staticmethod
    def _parse_size(value: str | None) -> int | None:
        if value is None:
            return None
        value = value.strip()
        if value.isdigit() and value.isascii():
            return int(value)
        return None

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
        """The aiosmtplib ``esmtp_extensions`` view: lower-case keyword to parameters."""
        return {key.lower(): value for key, value in self._items.items()}
