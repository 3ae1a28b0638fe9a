"""Build fastpool, compiling its pool core.

Five extensions: ``fastpool._core_pool``, compiled from the plain Python module
``src/fastpool/_core_pool.py`` with the C types of ``_core_pool.pxd`` (the same
file is the pure-Python core); ``fastpool._core``, from ``_core.pyx``: the
few parts only C can do (the clock, the socket probe, the mutex, the asyncio
borrow's ``am_send``); the drivers' borrow-path gates,
``fastpool._drivers.psycopg_gates`` and ``fastpool._drivers.asyncpg_gates``, and
the ``fastpool.asyncpg`` drop-in's borrow path, ``fastpool._compat.asyncpg_lend``,
written and compiled like the core.

Environment switches (read at build time):

* ``FASTPOOL_NO_EXTENSIONS=1``  build the pure-Python package (no compiler needed);
* ``FASTPOOL_REQUIRE_EXTENSIONS=1``  make a failed compile an error instead of a
  fallback to the pure-Python package (CI and wheel builds set it).
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


NO_EXTENSIONS = _flag("FASTPOOL_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("FASTPOOL_REQUIRE_EXTENSIONS")
if sys.implementation.name != "cpython" and not REQUIRE_EXTENSIONS:
    NO_EXTENSIONS = True


def _say(msg: str) -> None:
    print(f"*** fastpool: {msg}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build the extension, falling back to pure Python unless it is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            _say(f"could not compile the core ({exc}); pure-Python build")
        else:
            if self.extensions:
                _say("accelerated build (compiled: " + ", ".join(e.name for e in self.extensions) + ")")

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_EXTENSIONS:
                raise
            _say(f"could not compile {ext.name} ({exc}); pure-Python build")


#: What Cython compiles: the C parts, the core, and each driver's borrow-path gates (one .py each,
#: with the C types of the .pxd beside it; the same file is the pure-Python build).
COMPILED = [
    "src/fastpool/_core.pyx",
    "src/fastpool/_core_pool.py",
    "src/fastpool/_drivers/psycopg_gates.py",
    "src/fastpool/_drivers/asyncpg_gates.py",
    "src/fastpool/_compat/asyncpg_lend.py",
]


def _extensions() -> list:  # type: ignore[type-arg]
    if NO_EXTENSIONS:
        _say("FASTPOOL_NO_EXTENSIONS is set: pure-Python build")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        _say("Cython is not available: pure-Python build")
        return []
    return cythonize(
        COMPILED,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            # the C types are the .pxd files'; the modules' annotations are for mypy
            "annotation_typing": False,
        },
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
