"""smtplib's ``SMTP``, ``SMTP_SSL`` and ``LMTP`` on smtp_core's flows, over blocking sockets.

The methods keep smtplib's names, arguments and return values (``(code, bytes)``
replies, the refused-recipients dict), so ``import smtp_sync as smtplib`` works; what
is sent and how replies are read is smtp_core's (PIPELINING, BDAT, SIZE checked before
the content, LMTP replies per recipient, STARTTLS that refuses injected bytes).
"""

from __future__ import annotations

import socket
import ssl
import time

from ._sending import SendingMixin
from ._session import (
    _GLOBAL_DEFAULT_TIMEOUT,
    LMTP_PORT,
    SMTP_PORT,
    SMTP_SSL_PORT,
    Timeouts,
    _context,
)

__all__ = ["SMTP", "SMTP_SSL", "LMTP", "SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "Timeouts"]


class SMTP(SendingMixin):
    """An SMTP client with smtplib's API, driven by smtp_core.

    ``SMTP(host, port, local_hostname, timeout, source_address)`` as smtplib, plus:
    ``context`` (the ``ssl.SSLContext`` for STARTTLS; default
    ``ssl.create_default_context()``, which verifies certificates and host names),
    ``timeouts`` (:class:`Timeouts`: connect, greeting, command, data and a total
    deadline per ``sendmail``) and ``pipeline_window`` (whole transactions on the wire
    at once with PIPELINING and CHUNKING).

    One client may be shared by threads: commands take turns in call order, and
    messages that several threads send at once are pipelined back to back.
    """


class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (port 465); certificates and the host name are verified
    with ``ssl.create_default_context()`` unless another ``context`` is given."""

    default_port = SMTP_SSL_PORT

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: str | None = None,
        certfile: str | None = None,
        timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
        *,
        timeouts: Timeouts | None = None,
        pipeline_window: int = 16,
    ) -> None:
        self.keyfile = keyfile
        self.certfile = certfile
        context = _context(context, keyfile, certfile) or ssl.create_default_context()
        super().__init__(
            host, port, local_hostname, timeout, source_address,
            context=context, timeouts=timeouts, pipeline_window=pipeline_window,
        )

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        started = time.monotonic()
        sock = super()._get_socket(host, port, timeout)
        assert self.context is not None
        try:
            if timeout is not None:  # connecting and the handshake, together
                sock.settimeout(max(timeout - (time.monotonic() - started), 0.001))
            return self.context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise


class LMTP(SMTP):
    """LMTP (RFC 2033) over TCP or, for a ``host`` that is an absolute path, a Unix socket.

    Unlike smtplib's, ``sendmail`` reads one reply per accepted recipient after the
    content: recipients refused at delivery are among the refused ones, and when none
    was delivered ``SMTPRecipientsRefused`` is raised.
    """

    ehlo_msg = "lhlo"
    _lmtp = True

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
        *,
        context: ssl.SSLContext | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        super().__init__(
            host, port, local_hostname=local_hostname, source_address=source_address,
            timeout=timeout, context=context, timeouts=timeouts,
        )
