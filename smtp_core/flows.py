"""The I/O-free multi-step flows: generators that yield I/O requests (public module)."""

from ._flows import *  # noqa: F403
from ._flows import __all__ as __all__
