"""Events the connection emits, and the content events a caller sends after DATA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._replies import Reply

if TYPE_CHECKING:
    from ._commands import Command

__all__ = [
    "Event",
    "Greeting",
    "CommandReply",
    "ConnectionClosed",
    "Content",
    "EndOfData",
    "NEED_DATA",
]


class NEED_DATA:
    """Returned by ``next_event()`` when more bytes from the server are needed."""

    def __init__(self) -> None:  # pragma: no cover - never instantiated
        raise TypeError("NEED_DATA is a sentinel; compare with `is`")


class Event:
    """Base class of everything ``next_event()`` returns (besides ``NEED_DATA``)."""

    __slots__ = ()


# The events are frozen dataclasses whose ``__init__`` is written out: the generated
# one would run interpreted in the compiled build (where ``object.__setattr__`` on
# ``self`` in ``__init__`` is a plain store).


@dataclass(frozen=True, slots=True, init=False)
class Greeting(Event):
    """The server's opening reply (220 on success, 554 or 421 when it refuses)."""

    reply: Reply

    def __init__(self, reply: Reply) -> None:
        object.__setattr__(self, "reply", reply)

    @property
    def code(self) -> int:
        """The reply code."""
        return self.reply.code


@dataclass(frozen=True, slots=True, init=False)
class CommandReply(Event):
    """The reply to ``command``.

    ``command`` is the command this reply answers (for the reply after the end of
    DATA content it is the :class:`EndOfData` marker). It is None only for an
    unsolicited 421, which a server may send at any time before closing.
    """

    command: Command | EndOfData | None
    reply: Reply

    def __init__(self, command: Command | EndOfData | None, reply: Reply) -> None:
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "reply", reply)

    @property
    def code(self) -> int:
        """The reply code."""
        return self.reply.code


@dataclass(frozen=True, slots=True, init=False)
class ConnectionClosed(Event):
    """The server closed the connection (``receive_data(b"")``)."""

    expected: bool
    """True after QUIT or a 421/221 reply; False when the server closed unannounced."""

    def __init__(self, expected: bool) -> None:
        object.__setattr__(self, "expected", expected)


@dataclass(frozen=True, slots=True, init=False)
class Content:
    """A chunk of message content, sent after DATA's 354 reply.

    The connection normalises line endings and dot-stuffs it; no content can end
    the data early.
    """

    data: bytes

    def __init__(self, data: bytes) -> None:
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The end of message content: the connection adds the ``CRLF.CRLF`` terminator."""

    def trace(self) -> str:
        """Protocol log text."""
        return "."
