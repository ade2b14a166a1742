"""What the optional compiled build (mypyc, see hatch_build.py) needs to know.

The client's classes are compiled there and subclassed by the adapters' (and users')
Python classes, which mypyc allows only when told: :func:`mypyc_attr` (a no-op without
mypyc).

Compiled code keeps the exception being handled in the thread's exception state rather
than in its own frame, as Python does. The compiled modules therefore never ``await``
inside an ``except`` or ``finally`` block, nor in an ``async with`` whose exit can
suspend (the coroutine would be suspended with that state lent to whatever code runs
next, and a bare ``raise`` after it could re-raise someone else's exception or free one
still in use): they take the exception out of the handler, then await, then raise it.
mypyc also ignores ``raise ... from ...``: they chain with :func:`caused_by`.
``tests/test_compiled.py`` checks both rules on every compiled module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["mypyc_attr", "caused_by"]

E = TypeVar("E", bound=BaseException)

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:

    def mypyc_attr(*attrs: Any, **kwattrs: Any) -> Any:
        return lambda cls: cls


def caused_by(exc: E, cause: BaseException | None) -> E:
    """``exc``, to be raised as ``raise exc from cause`` would."""
    exc.__cause__ = cause  # also sets __suppress_context__, as ``from`` does
    return exc
