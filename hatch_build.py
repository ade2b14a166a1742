"""The optional compiled build: smtp_core's hot modules compiled with mypyc.

Off by default, so ``pip install .`` needs no compiler and ships pure Python. To build
and install the compiled wheel (a C compiler and the Python headers needed)::

    HATCH_BUILD_HOOK_ENABLE_CUSTOM=true pip install .

The pure-Python modules stay the reference: the compiled ones are built from the same
sources, and the test suite runs against both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# The protocol machine and the flows: what every message runs through. (The client's
# coroutines are not compiled: with mypyc 2.4 a compiled coroutine that awaits anyio's
# close, which swallows the cancellation it makes, sees that CancelledError escape.)
HOT_MODULES = [
    "smtp_core/_buffer.py",
    "smtp_core/_replies.py",
    "smtp_core/_content.py",
    "smtp_core/_state.py",
    "smtp_core/_events.py",
    "smtp_core/_capabilities.py",
    "smtp_core/_connection.py",
    "smtp_core/_outcome.py",
    "smtp_core/_flows.py",
    "smtp_core/_transaction.py",
]


class CompiledCore(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        work = Path(tempfile.mkdtemp(prefix="smtp-sansio-mypyc-"))
        shutil.copytree(Path(self.root) / "smtp_core", work / "smtp_core")
        subprocess.run([sys.executable, "-m", "mypyc", *HOT_MODULES], cwd=work, check=True)
        for built in sorted(work.glob("*.so")) + sorted(work.glob("*.pyd")):
            build_data["force_include"][str(built)] = built.name  # mypyc's shared runtime
        for built in sorted((work / "smtp_core").glob("*.so")) + sorted(
            (work / "smtp_core").glob("*.pyd")
        ):
            build_data["force_include"][str(built)] = f"smtp_core/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
