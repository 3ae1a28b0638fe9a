"""fastpool: a fast, correct connection pool for psycopg 3 and any resource.

``fastpool.Pool`` (threads) pools psycopg connections; ``fastpool.ResourcePool``
pools anything that implements :class:`fastpool.Resource`.  The bookkeeping
runs in a compiled core (``fastpool.IMPLEMENTATION == "c"``) or, when that is
not built or ``FASTPOOL_NO_EXTENSIONS=1`` is set, in its pure-Python twin
(``"python"``).  Logs go to the ``fastpool`` logger.
"""

from __future__ import annotations

from ._core_select import IMPLEMENTATION
from ._meta import ConnectionMetadata
from ._options import PoolOptions
from ._pool import Pool
from ._pool_async import AsyncPool
from ._psycopg_pool import ConnectionPool, NullConnectionPool
from ._psycopg_pool_async import AsyncConnectionPool, AsyncNullConnectionPool
from ._shell import BasePool, PooledConnection, ResourcePool
from ._shell_async import AsyncBasePool, AsyncPooledConnection, AsyncResourcePool
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
