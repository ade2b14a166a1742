"""aiosmtplib's exception hierarchy (shared by every smtp-sansio adapter).

``TimeoutError`` is importable from here as from aiosmtplib's module; every
``SMTPTimeoutError`` is one.
"""

from builtins import TimeoutError as TimeoutError

from smtp_core._exceptions import *  # noqa: F403
from smtp_core._exceptions import __all__ as __all__
