"""What is known of one message's fate (shared by results and exceptions)."""

from __future__ import annotations

import enum

__all__ = ["Outcome"]


class Outcome(enum.Enum):
    """What is known of one message's fate.

    Every message a client tried to send ends as one of these. ``TransactionResult``
    and the exception a message met carry it as ``outcome``.
    """

    DONE = "done"
    """The server gave the message its final answer (accepted or refused): see the reply."""
    NEVER_SENT = "never_sent"
    """None of its content was written: the server cannot have it; safe to send again."""
    UNKNOWN = "unknown"
    """Its content may have reached the server, whose answer never came: it may have
    been delivered, so sending it again may deliver it twice."""
