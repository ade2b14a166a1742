"""The I/O-free multi-step flows: generators that yield I/O requests (public module)."""

from ._flows import *  # noqa: F403
from ._flows import __all__ as _flows_all
from ._transaction import *  # noqa: F403
from ._transaction import __all__ as _transaction_all

__all__ = [*_flows_all, *_transaction_all]
