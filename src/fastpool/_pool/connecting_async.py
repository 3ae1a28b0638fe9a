"""Opening connections for an asyncio pool: one background task per connection the core reserves.

The threaded pool's connector is generated from this module.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

from .._acompat import maybe_await, wake_async
from .._meta import META_NEW
from .breaker import BACKOFF_MAX

if TYPE_CHECKING:
    from .base_async import AsyncBasePool

__all__ = ["AsyncConnector"]


class AsyncConnector:
    """Opens the connections the core reserves, in the pool's background work.

    Each reservation is settled exactly once: by a connection handed to the
    core (and from there to the oldest waiter), or given back as a failure.
    Connects never run in a caller: a caller that gives up abandons only its
    wait, and the new connection serves the next one.  Failures are booked by
    the pool (:meth:`~fastpool._pool.common.PoolCommon._connect_failure`), which
    says whom to fail and when to retry.
    """

    __slots__ = ("_pool",)

    def __init__(self, pool: AsyncBasePool[Any]) -> None:
        self._pool = pool

    async def connect(self) -> None:
        """Open one connection for a reservation of the core, which is always settled once."""
        pool = self._pool
        driver = pool._driver
        settled = False
        w = None
        try:
            async with pool._runner.slots:
                if pool._closed:
                    return
                started = monotonic()
                try:
                    conn = await driver.connect()
                except Exception as exc:
                    settled = True
                    await self._failed(exc, driver.retryable(exc))
                    return
                pool._conns[id(conn)] = conn
                try:
                    hook = pool._after_connect
                    if hook is not None:
                        await pool._phase(conn, started + pool._acquire_timeout, hook, conn, META_NEW)
                    data = driver.snapshot(conn)
                except Exception as exc:
                    settled = True
                    pool._close_later([conn])
                    await self._failed(exc, driver.hook_retryable(exc), hook=True)
                    return
                except BaseException:
                    pool._close_later([conn])
                    raise
            settled = True
            w = pool._connect_done(conn, data, started)
        finally:
            if not settled:  # interrupted, or the pool closed: give the reservation back
                with pool._lock:
                    pool._core.connect_failed()
        if w is not None:
            wake_async(w)
        if pool._doomed:
            pool._close_doomed()

    async def _failed(self, exc: BaseException, retry: bool, hook: bool = False) -> None:
        pool = self._pool
        failed, n, delay, gave_up = pool._connect_failure(exc, retry, hook)
        callback = pool._config.reconnect_failed
        if gave_up and callback is not None:
            try:
                await maybe_await(callback(pool))
            except Exception:
                pool._log.exception("%s: error in reconnect_failed", pool._name)
        for w in failed:
            wake_async(w)
        breaker = pool._breaker
        if n:
            pool._runner.later(delay, pool._start_connects, n)
        elif pool._closed:
            return
        elif monotonic() - breaker.demand_at < max(breaker.after or 0.0, BACKOFF_MAX * 2):
            pool._kick_reconnect()  # callers were refused lately: keep trying, rate-limited
