"""Pick the build of the core: compiled, or the same source run as Python.

The core is written once, in ``_core_pool.py``.  The compiled build is the
extension ``fastpool._core_pool`` beside that file (Python's import prefers an
extension over a ``.py``); the pure-Python build runs the ``.py`` itself,
loaded under the name ``fastpool._core_pool_pure`` so that both builds can be
loaded in one process (the test-suite runs every pool on both).  A driver's
hot-path gates are written and built the same way (``load_module``), and a
pool always uses the gates of its core's build.

``FASTPOOL_NO_EXTENSIONS=1`` selects the pure-Python build, and so does any
interpreter other than CPython (whatever else is set); otherwise
``FASTPOOL_REQUIRE_EXTENSIONS=1`` turns a missing compiled build into an
ImportError instead of a fallback.  Everything
in fastpool reaches the core through :data:`core`; the pools read it when they
are constructed, so that a test can make a pool use either build.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Literal

__all__ = ["IMPLEMENTATION", "Build", "core", "load", "load_module"]

Build = Literal["c", "python"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


NO_EXTENSIONS = _flag("FASTPOOL_NO_EXTENSIONS") or sys.implementation.name != "cpython"
REQUIRE_EXTENSIONS = _flag("FASTPOOL_REQUIRE_EXTENSIONS")


def load_module(name: str, build: Build) -> ModuleType:
    """Import one build of a module written once and compiled by Cython.

    ``name`` is the module's full name (``fastpool._core_pool``); ``build`` is
    ``"c"`` (the extension; an ImportError when there is none, or when
    ``FASTPOOL_NO_EXTENSIONS`` is set) or ``"python"``
    (the ``.py`` run as it is, as the module ``<name>_pure``).
    """
    if build == "c":
        if NO_EXTENSIONS:
            raise ImportError(
                f"{name}: FASTPOOL_NO_EXTENSIONS is set (or this is not CPython): pure-Python build only"
            )
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or spec.origin.endswith(".py"):
            raise ImportError(f"{name} is not compiled (no extension module beside the .py)")
        return importlib.import_module(name)
    if build == "python":
        return _load_pure(name)
    raise ValueError(f"unknown build: {build!r} (expected 'c' or 'python')")


def load(name: Build) -> ModuleType:
    """Import and return one build of the core by name (``"c"`` or ``"python"``)."""
    return load_module(f"{__package__}._core_pool", name)


def _load_pure(name: str) -> ModuleType:
    """The ``.py`` of module ``name`` run as Python, as the module ``<name>_pure``."""
    pure = f"{name}_pure"
    mod = sys.modules.get(pure)
    if mod is not None:
        return mod
    package, _, leaf = name.rpartition(".")
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    sub = package.split(".")[1:]  # below fastpool
    path = os.path.join(pkg_dir, *sub, f"{leaf}.py")
    spec = importlib.util.spec_from_file_location(pure, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with the package
        raise ImportError(f"cannot load the pure-Python build of {name} from {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[pure] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[pure]
        raise
    return mod


def build_of(module: ModuleType) -> Build:
    """Which build a module loaded by :func:`load_module` is."""
    return "python" if module.__name__.endswith("_pure") else "c"


IMPLEMENTATION: Build
if TYPE_CHECKING:
    from . import _core_pool as core

    IMPLEMENTATION = "python"
elif NO_EXTENSIONS:  # asked for the pure build: nothing compiled is asked for, or required
    core = load("python")
    IMPLEMENTATION = "python"
else:
    try:
        core = load("c")
        IMPLEMENTATION = "c"
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "FASTPOOL_REQUIRE_EXTENSIONS is set but fastpool's compiled core (fastpool._core_pool) is "
                "missing or cannot be loaded: this is a pure-Python install. Install a wheel "
                "(pip install 'fastpool[binary]') or build from source with a C compiler, or unset "
                f"FASTPOOL_REQUIRE_EXTENSIONS to use the pure-Python core. ({exc})"
            ) from None
        core = load("python")
        IMPLEMENTATION = "python"
