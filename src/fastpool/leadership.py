"""Leadership through PostgreSQL session-level advisory locks.

``with pool.leadership("scheduler") as lead:`` takes ``pg_try_advisory_lock``
on one connection of the pool, in autocommit (so the session never sits idle
in a transaction), and keeps that connection out of the pool until the guard
is released, which unlocks on that same connection.  A connection that still
holds the lock is never handed to anyone else: if the unlock returns false,
fails, or is interrupted, the connection is closed instead (the server then
drops the lock), and the pool's core refuses to idle a connection marked as
holding a lock whatever happens.

Keys: an int64, a pair of int32 (PostgreSQL's separate two-key lock space), or
a string hashed by :func:`advisory_key`, which SQL can reproduce and which
does not depend on ``PYTHONHASHSEED``.

Fencing caveat: loss of the lock is noticed at the next ``check()`` (or
heartbeat) at the earliest; meanwhile another node may already lead.  Work
done through ``lead.connection()`` fails as soon as the session is gone; work
on other connections is not fenced.  Use ``lead.connection()`` for the work,
or a fencing token (bump an epoch row in the same transaction as the work).
"""

from __future__ import annotations

from ._surfaces.advisory import LeadershipLost, LeadershipNotAcquired, LockKey, advisory_key
from ._surfaces.leadership import Leadership
from ._surfaces.leadership_async import AsyncLeadership

__all__ = [
    "AsyncLeadership",
    "Leadership",
    "LeadershipLost",
    "LeadershipNotAcquired",
    "LockKey",
    "advisory_key",
]
