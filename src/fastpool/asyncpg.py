"""asyncpg's pool API on fastpool: ``from fastpool.asyncpg import create_pool``.

A drop-in for ``asyncpg.create_pool`` and ``asyncpg.Pool`` (see docs/from-asyncpg.md,
"Switching from asyncpg"): the same signature, proxy, hooks, shortcuts and
errors, with fastpool's guarantees under them.  Needs asyncpg
(``pip install 'fastpool[asyncpg]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _core_build
from ._compat.asyncpg_pool import AcquireTimeout, AsyncpgPoolOptions, Pool, create_pool
from ._compat.asyncpg_proxy import PoolConnectionProxy

if TYPE_CHECKING:
    from ._compat.asyncpg_lend import AcquireContext as PoolAcquireContext
else:  # what acquire() returns, of the default build (a pool's is of its core's build)
    PoolAcquireContext = _core_build.load_module(
        "fastpool._compat.asyncpg_lend", _core_build.build_of(_core_build.core)
    ).AcquireContext

__all__ = [
    "AcquireTimeout",
    "AsyncpgPoolOptions",
    "Pool",
    "PoolAcquireContext",
    "PoolConnectionProxy",
    "create_pool",
]

for _obj in (Pool, PoolConnectionProxy, AsyncpgPoolOptions, create_pool):
    _obj.__module__ = __name__
