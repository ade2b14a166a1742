"""What the optional compiled build (mypyc, see hatch_build.py) needs to know.

The client's classes are compiled there and subclassed by the adapters' (and users')
Python classes, which mypyc allows only when told. Without mypyc this is a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["mypyc_attr"]

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:

    def mypyc_attr(*attrs: Any, **kwattrs: Any) -> Any:
        return lambda cls: cls
