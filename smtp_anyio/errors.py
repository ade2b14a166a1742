"""aiosmtplib's exception hierarchy (shared by every smtp-sansio adapter)."""

from smtp_core._exceptions import *  # noqa: F403
from smtp_core._exceptions import __all__ as __all__
