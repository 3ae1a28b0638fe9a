"""Ownership: explicit per-owner checkout of pooled connections.

An owner (an asyncio task, a thread, or an explicit :class:`OwnerHandle`)
checks a connection out of the pool and keeps it *pinned* until it checks it
in, ends, or times out.  Other identities reach that connection when the
owner allows them, when they descend from the owner (the *callers chain*, a
context variable that ``asyncio.create_task``, ``asyncio.to_thread`` and
:meth:`Ownership.propagate` carry over), or when the pool is in shared mode.
Every borrow through ``connection()`` is exclusive.  This is
DBConnection.Ownership translated to Python, and the basis of
:class:`fastpool.Sandbox`.

Modes (DBConnection's): ``Mode.AUTO`` checks a connection out implicitly at
an identity's first ``connection()``; ``Mode.MANUAL`` requires an explicit
``checkout()`` (or an allowance, or an ancestor's checkout);
``Mode.shared(owner)`` lets every identity use ``owner``'s connection.

Revocation: when an owner checks in, ends, times out (``ownership_timeout``),
or the mode changes, everything attached to its checkout is detached at once
and logged.  With no borrower, ``pre_checkin("checkin")`` runs and the
connection goes back through the pool's reset.  With a borrower, its running
query is cancelled, ``pre_checkin(("disconnect", error))`` runs, and when the
borrower leaves its block the connection is closed and it gets
:class:`fastpool.OwnershipRevoked`.  A timeout always closes the connection.
A borrow that leaves the pinned connection broken or mid-query revokes that
checkout too, so a connection in an unknown state is never shared.
"""

from __future__ import annotations

from ._surfaces.owners import Mode, Status, identity
from ._surfaces.ownership import OwnerHandle, Ownership
from ._surfaces.ownership_async import AsyncOwnerHandle, AsyncOwnership

__all__ = [
    "AsyncOwnerHandle",
    "AsyncOwnership",
    "Mode",
    "OwnerHandle",
    "Ownership",
    "Status",
    "identity",
]
