"""The return path of an asyncio pool, off the borrow path: commit or roll back, reset, hooks.

The threaded pool's returner is generated from this module.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

from .._meta import ConnectionMetadata

if TYPE_CHECKING:
    from .base_async import AsyncBasePool

__all__ = ["AsyncReturner"]


class AsyncReturner:
    """Gives a borrowed connection back when the borrow path cannot do it alone.

    Ending a ``connection()`` block commits or rolls back; then the driver's
    reset (what the I/O-free ``reset_now`` could not settle) and
    ``after_release``; then hand-off to the oldest waiter, or idle.  Every
    step is bounded by ``release_timeout``: past it the connection is closed.
    A step that fails closes the connection; one interrupted midway leaves it
    in an unknown state, so it is closed too, and its slot is freed at once.
    """

    __slots__ = ("_pool",)

    def __init__(self, pool: AsyncBasePool[Any]) -> None:
        self._pool = pool

    async def release_block(self, e: Any, ok: bool) -> None:
        """The end of a ``connection()`` block: commit if ``ok`` (else roll back), then :meth:`release`."""
        pool = self._pool
        if e.owner is not pool._core:  # borrowed before a fork, in the parent: forgotten here
            return
        driver = pool._driver
        if pool._has_finish and driver.finish_action(e.conn, ok):
            try:
                deadline = monotonic() + pool._release_timeout
                await pool._phase(e.conn, deadline, driver.finish, e.conn, ok)
            except Exception as fexc:
                await self.release(e)
                if ok:
                    raise
                pool._log.debug("%s: rollback after an error failed: %s", pool._name, fexc)
                return
            except BaseException:  # interrupted mid-commit: unknown state
                pool._discard(e)
                raise
        await self.release(e)

    async def release(self, e: Any) -> None:
        """Give back a borrowed entry: reset, ``after_release``, then hand-off or idle."""
        pool = self._pool
        if e.owner is not pool._core:  # borrowed before a fork, in the parent: forgotten here
            return
        if pool._closed or not (pool._keep_idle or pool._core.waiting):
            await pool._discard_now(e)  # nobody will use it: closed now, nothing reset
            return
        now = monotonic()
        try:
            keep = await self._reset(e, now)
        except Exception as exc:
            pool._log.warning(
                "%s: resetting a returned connection failed, closing it: %s",
                pool._name,
                pool._driver.redact(str(exc)),
            )
            keep = False
        except BaseException:  # interrupted mid-reset: unknown state; the slot is freed now
            pool._discard(e)
            raise
        if not keep:
            pool._count("returns_bad")
            pool._discard(e)
            return
        pool._fast.release(e, now)

    async def _reset(self, e: Any, now: float) -> bool:
        """The driver's reset then ``after_release``, by ``release_timeout``; False: close it.

        Past ``max_lifetime`` a connection is closed without either.
        """
        pool = self._pool
        conn = e.conn
        deadline = now + pool._release_timeout
        keep = now < e.expires_at
        driver = pool._driver
        if keep and pool._has_reset:
            fast = driver.reset_now(e)  # no round trip at all when nothing is to be done
            keep = fast == 1 or (fast == 2 and await pool._phase(conn, deadline, driver.reset, e))
        hook = pool._after_release
        if keep and hook is not None:
            meta = ConnectionMetadata(now - e.created_at, 0.0)
            keep = bool(await pool._phase(conn, deadline, hook, conn, meta))
            if not keep:
                pool._count("after_release_rejections")
        return bool(keep)
