"""Select the pool core: compiled, or the same source run as Python.

The core is one module, ``_pool_core.py``.  The accelerated build compiles it
(``fastpool._pool_core``, an extension beside the ``.py``, which Python's
import prefers); the pure-Python build runs the ``.py`` itself, loaded under
the name ``fastpool._pool_core_py`` so that both can be loaded in one process
(the test-suite runs every pool on both).

``FASTPOOL_NO_EXTENSIONS=1`` forces the pure-Python build, and so does any
interpreter other than CPython.  ``FASTPOOL_REQUIRE_EXTENSIONS=1`` turns a
missing compiled core into an ImportError instead of a fallback.  Everything
in fastpool reaches the core through :data:`core`; the pools read it when they
are constructed, so the test-suite can run every pool on both builds.
"""

from __future__ import annotations

import importlib.util
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
    """Import and return one build of the core by name ("c" or "python")."""
    if name == "c":
        spec = importlib.util.find_spec(f"{__package__}._pool_core")
        if spec is None or spec.origin is None or spec.origin.endswith(".py"):
            raise ImportError("fastpool._pool_core is not compiled (no extension module beside the .py)")
        from . import _pool_core

        return _pool_core
    if name == "python":
        return _load_pure()
    raise ValueError(f"unknown core implementation: {name!r}")


def _load_pure() -> ModuleType:
    """``_pool_core.py`` run as Python, as the module ``fastpool._pool_core_py``."""
    name = f"{__package__}._pool_core_py"
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pool_core.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with the package
        raise ImportError(f"cannot load the pure-Python core from {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


IMPLEMENTATION: Literal["c", "python"]
if TYPE_CHECKING:
    from . import _pool_core as core

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
                "FASTPOOL_REQUIRE_EXTENSIONS is set but fastpool's compiled core (fastpool._pool_core) is "
                "missing or cannot be loaded: this is a pure-Python install. Install a wheel "
                "(pip install 'fastpool[binary]') or build from source with a C compiler, or unset "
                f"FASTPOOL_REQUIRE_EXTENSIONS to use the pure-Python core. ({exc})"
            ) from None
        core = load("python")
        IMPLEMENTATION = "python"
