"""The optional compiled build: smtp_core's (and smtp_sync's) hot modules compiled with mypyc.

Off by default, so ``pip install .`` needs no compiler and ships pure Python. To build
and install the compiled wheel (a C compiler and the Python headers needed)::

    HATCH_BUILD_HOOK_ENABLE_CUSTOM=true pip install .

The pure-Python modules stay the reference: the compiled ones are built from the same
sources, and the test suite runs against both. What the sources avoid for mypyc is in
``smtp_core/_native.py``. One difference remains: compiled functions carry no docstrings,
and ``inspect.signature`` reads only those whose defaults are all literals (``help()``
and signatures come from the pure-Python build).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# The protocol machine, the flows and the client: what every message runs through.
# (smtp_core/_native.py says what the compiled sources must avoid; tests/test_compiled.py
# checks it.)
HOT_MODULES = [
    "smtp_core/_buffer.py",
    "smtp_core/_replies.py",
    "smtp_core/_content.py",
    "smtp_core/_state.py",
    "smtp_core/_events.py",
    "smtp_core/_commands.py",
    "smtp_core/_capabilities.py",
    "smtp_core/_connection.py",
    "smtp_core/_outcome.py",
    "smtp_core/_flows.py",
    "smtp_core/_transaction.py",
    "smtp_core/_client_turns.py",
    "smtp_core/_client_session.py",
    "smtp_core/_client_commands.py",
    "smtp_core/_client_auth.py",
    "smtp_core/_client_send.py",
    "smtp_core/_client.py",
    # smtp_sync's blocking driver, its turns and sendmail's per-message path: what every
    # message runs through (the classes users subclass stay Python).
    "smtp_sync/_driver.py",
    "smtp_sync/_turns.py",
    "smtp_sync/_send.py",
]
# The packages those modules are in: copied whole for mypyc, their extensions shipped.
PACKAGES = sorted({module.split("/")[0] for module in HOT_MODULES})


class CompiledCore(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        work = self._compiled(Path(self.root))
        for built in sorted(work.glob("*.so")) + sorted(work.glob("*.pyd")):
            build_data["force_include"][str(built)] = built.name  # mypyc's shared runtime
        for package in PACKAGES:
            for built in sorted((work / package).glob("*.so")) + sorted(
                (work / package).glob("*.pyd")
            ):
                build_data["force_include"][str(built)] = f"{package}/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def _compiled(self, root: Path) -> Path:
        """The extension modules for these sources, compiled once.

        A front end may ask for the wheel more than once for one build (pip asks for its
        metadata by building a whole wheel when the backend does not offer it alone): the
        modules are compiled into ``build/mypyc/<key>``, the key covering the sources,
        the module list, this Python and mypyc's version and options, and reused while
        it matches.
        """
        import mypy.version

        key = hashlib.sha256()
        for part in (
            sys.version,
            mypy.version.__version__,
            os.environ.get("MYPYC_OPT_LEVEL", ""),
            os.environ.get("MYPYC_DEBUG_LEVEL", ""),
            *HOT_MODULES,
        ):
            key.update(part.encode() + b"\0")
        for package in PACKAGES:
            for source in sorted((root / package).rglob("*.py")):
                key.update(source.relative_to(root).as_posix().encode() + b"\0")
                key.update(source.read_bytes() + b"\0")
        cache = root / "build" / "mypyc"
        work = cache / key.hexdigest()[:20]
        if (work / "complete").exists():
            self.app.display_info(f"smtp-sansio: compiled modules reused from {work}")
            return work
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix="building-", dir=cache))
        try:
            built = shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
            for package in PACKAGES:
                shutil.copytree(root / package, building / package, ignore=built)
            subprocess.run([sys.executable, "-m", "mypyc", *HOT_MODULES], cwd=building, check=True)
            (building / "complete").touch()
            shutil.rmtree(work, ignore_errors=True)
            building.rename(work)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return work
