"""Sphinx configuration for the smtp-sansio documentation.

Build with warnings as errors::

    sphinx-build -W --keep-going -b html docs build/docs

Nothing is fetched from the network at build time: the Python inventory for
intersphinx is shipped in ``docs/_inventories``, and the state diagram is generated
from ``smtp_core._state`` by the ``state_diagram`` extension in ``docs/_ext``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import smtp_core  # noqa: E402

project = "smtp-sansio"
author = "the smtp-sansio authors"
copyright = "the smtp-sansio authors"
release = smtp_core.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinxcontrib.mermaid",
    "state_diagram",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories", "_ext"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# The Python inventory is a local file (from Debian's python3.11-doc package), so the
# build needs no network; links still point at docs.python.org.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(HERE / "_inventories" / "python3.inv")),
}

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"undoc-members": True}

html_theme = "furo"
html_title = f"smtp-sansio {release}"
