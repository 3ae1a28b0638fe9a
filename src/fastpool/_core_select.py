"""Select the pool core: the compiled ``fastpool._core`` or its pure-Python twin ``_core_py``.

``FASTPOOL_NO_EXTENSIONS=1`` forces the pure-Python twin, and so does any
interpreter other than CPython.  ``FASTPOOL_REQUIRE_EXTENSIONS=1`` turns a
missing compiled core into an ImportError instead of a fallback.  Everything
in fastpool reaches the core through :data:`core`; the pools read it when they
are constructed, so the test-suite can run every pool on both twins.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Literal

__all__ = ["IMPLEMENTATION", "core", "load"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


NO_EXTENSIONS = _flag("FASTPOOL_NO_EXTENSIONS") or sys.implementation.name != "cpython"
REQUIRE_EXTENSIONS = _flag("FASTPOOL_REQUIRE_EXTENSIONS")


def load(name: Literal["c", "python"]) -> ModuleType:
    """Import and return one twin of the core by name ("c" or "python")."""
    if name == "c":
        from . import _core  # type: ignore[attr-defined]

        return _core  # type: ignore[no-any-return]
    if name == "python":
        from . import _core_py

        return _core_py
    raise ValueError(f"unknown core implementation: {name!r}")


IMPLEMENTATION: Literal["c", "python"]
if TYPE_CHECKING:
    from . import _core_py as core

    IMPLEMENTATION = "python"
elif NO_EXTENSIONS and not REQUIRE_EXTENSIONS:
    core = load("python")
    IMPLEMENTATION = "python"
else:
    try:
        core = load("c")
        IMPLEMENTATION = "c"
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "FASTPOOL_REQUIRE_EXTENSIONS is set but fastpool's compiled core (fastpool._core) is "
                "missing or cannot be loaded: this is a pure-Python install. Install a wheel "
                "(pip install 'fastpool[binary]') or build from source with a C compiler, or unset "
                f"FASTPOOL_REQUIRE_EXTENSIONS to use the pure-Python core. ({exc})"
            ) from None
        core = load("python")
        IMPLEMENTATION = "python"
