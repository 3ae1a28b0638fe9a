"""Exceptions raised by fastpool.

``PoolTimeout``, ``PoolClosed`` and ``TooManyRequests`` subclass
``psycopg.OperationalError`` as psycopg_pool's do, so code that catches
psycopg_pool's errors keeps working after switching pools.  Every other error
derives from :class:`fastpool.Error`.  No message ever contains a password.
"""

from __future__ import annotations

import psycopg

__all__ = [
    "Error",
    "OwnershipError",
    "OwnershipRevoked",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "SandboxError",
    "TooManyRequests",
    "WrongPoolError",
]


class Error(Exception):
    """Base class of every fastpool error."""

    __module__ = "fastpool"


class PoolError(psycopg.OperationalError, Error):
    """Base class of the pool errors that psycopg_pool also raises."""

    __module__ = "fastpool"


class PoolTimeout(PoolError):
    """No connection could be handed out before the acquire deadline.

    The message names the phase that ran out of time and the caller's total
    timeout; the last connection error, if any, is the ``__cause__``.
    """

    __module__ = "fastpool"


class PoolClosed(PoolError):
    """The pool is closed (or was closed while the caller waited)."""

    __module__ = "fastpool"


class TooManyRequests(PoolError):
    """``max_waiting`` callers are already queued for a connection."""

    __module__ = "fastpool"


class WrongPoolError(Error, ValueError):
    """A connection was returned to a pool it does not belong to, or twice."""

    __module__ = "fastpool"


class OwnershipError(Error):
    """No connection is owned by, allowed to, or shared with the caller (ownership pools)."""

    __module__ = "fastpool"


class OwnershipRevoked(OwnershipError):
    """The connection being borrowed was taken away: its owner ended, checked in or timed out."""

    __module__ = "fastpool"


class SandboxError(Error):
    """The sandbox transaction could not be started, or was ended behind the sandbox's back."""

    __module__ = "fastpool"
