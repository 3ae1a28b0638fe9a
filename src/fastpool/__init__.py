"""fastpool: a fast, correct connection pool for psycopg 3 and any resource.

``fastpool.Pool`` (threads) pools psycopg connections; ``fastpool.ResourcePool``
pools anything that implements :class:`fastpool.Resource`.  The bookkeeping
runs in a compiled core (``fastpool.IMPLEMENTATION == "c"``) or, when that is
not built or ``FASTPOOL_NO_EXTENSIONS=1`` is set, in its pure-Python build
(``"python"``).  Logs go to the ``fastpool`` logger.
"""

from __future__ import annotations

from ._compat.psycopg_pool import ConnectionPool, NullConnectionPool
from ._compat.psycopg_pool_async import AsyncConnectionPool, AsyncNullConnectionPool
from ._core_build import IMPLEMENTATION
from ._meta import ConnectionMetadata
from ._pool.base import BasePool, ResourcePool
from ._pool.base_async import AsyncBasePool, AsyncResourcePool
from ._pool.checkout import PooledConnection
from ._pool.checkout_async import AsyncPooledConnection
from ._surfaces.options import PoolOptions
from ._surfaces.pool import Pool
from ._surfaces.pool_async import AsyncPool
from ._types import HistogramStats, PoolStats
from .errors import (
    Error,
    OwnershipError,
    OwnershipRevoked,
    PoolClosed,
    PoolError,
    PoolTimeout,
    SandboxError,
    TooManyRequests,
    WrongPoolError,
)
from .leadership import AsyncLeadership, Leadership, LeadershipLost, LeadershipNotAcquired, advisory_key
from .ownership import AsyncOwnerHandle, AsyncOwnership, Mode, OwnerHandle, Ownership, Status
from .recycle import Recycle
from .resource import AsyncResource, BaseResource, Resource
from .sandbox import AsyncSandbox, Sandbox

__all__ = [
    "IMPLEMENTATION",
    "AsyncBasePool",
    "AsyncConnectionPool",
    "AsyncLeadership",
    "AsyncNullConnectionPool",
    "AsyncOwnerHandle",
    "AsyncOwnership",
    "AsyncPool",
    "AsyncPooledConnection",
    "AsyncResource",
    "AsyncResourcePool",
    "AsyncSandbox",
    "BasePool",
    "BaseResource",
    "ConnectionMetadata",
    "ConnectionPool",
    "Error",
    "HistogramStats",
    "Leadership",
    "LeadershipLost",
    "LeadershipNotAcquired",
    "Mode",
    "NullConnectionPool",
    "OwnerHandle",
    "Ownership",
    "OwnershipError",
    "OwnershipRevoked",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolOptions",
    "PoolStats",
    "PoolTimeout",
    "PooledConnection",
    "Recycle",
    "Resource",
    "ResourcePool",
    "Sandbox",
    "SandboxError",
    "Status",
    "TooManyRequests",
    "WrongPoolError",
    "__version__",
    "advisory_key",
]

__version__ = "0.1.0"
