"""Exceptions raised by the protocol machine.

``ProtocolError`` is the base. ``LocalProtocolError`` means the caller asked for
something the protocol (or the server's advertised capabilities) does not allow;
``RemoteProtocolError`` means the server sent something that breaks the
protocol or one of the configured limits. After either is raised by a
:class:`~smtp_core.ClientConnection`, the connection is in the ``ERROR`` state
for good.

Command constructors raise ``LocalProtocolError`` directly (it subclasses
``ValueError``), so a malformed address fails before any byte exists.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "LocalProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class for protocol errors raised by :mod:`smtp_core`."""


class LocalProtocolError(ProtocolError, ValueError):
    """The caller misused the protocol: bad argument, wrong state, unsupported extension."""


class RemoteProtocolError(ProtocolError):
    """The server violated the protocol or exceeded a configured limit."""
