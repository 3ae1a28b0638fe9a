"""The psycopg 3 driver of the asyncio pools: opening, checking, resetting, closing.

What the driver does is described in ``_psycopg_base``, which holds its
I/O-free part, shared with the driver of the other kind of pool.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from ._psycopg_base import ASYNC_SETTERS, PsycopgDriverBase, changes

__all__ = ["AsyncPsycopgDriver", "run_autocommit_async"]

logger = logging.getLogger("fastpool")


async def run_autocommit_async(conn: Any, sql: str) -> None:
    """Run ``sql`` in one simple-protocol round trip with autocommit on.

    Going through ``conn.execute`` (not ``pgconn``) lets psycopg see
    ``DISCARD ALL``/``DEALLOCATE ALL`` and clear its prepared-statement cache.
    """
    if conn._autocommit:
        await conn.execute(sql, prepare=False)
        return
    await conn.set_autocommit(True)
    try:
        await conn.execute(sql, prepare=False)
    finally:
        if not conn.closed:
            await conn.set_autocommit(False)


class AsyncPsycopgDriver(PsycopgDriverBase):
    """Opens psycopg ``AsyncConnection`` objects for the asyncio pools (internal)."""

    connection_base = psycopg.AsyncConnection

    async def connect(self) -> Any:
        conn = await self.connection_class.connect(self.conninfo, **self.kwargs)
        conn._pool = self  # psycopg only needs close_returns/putconn
        return conn

    async def putconn(self, conn: Any) -> None:
        """What psycopg calls from ``conn.close()`` when ``close_returns`` is set."""
        pool = self.pool() if self.pool is not None else None
        if pool is None:
            conn._pool = None
            await conn.close()
        else:
            await pool.putconn(conn)

    async def close(self, conn: Any) -> None:
        try:
            conn._pool = None  # a real close, even with close_returns
            await conn.close()
        except Exception as exc:  # pragma: no cover - close is best effort
            logger.debug("error closing a connection: %s", self.redact(str(exc)))

    async def check(self, conn: Any) -> None:
        if conn.closed:
            raise psycopg.OperationalError("connection is closed")
        await run_autocommit_async(conn, "")
        err = self.role_error(conn)  # what the server reported in this round trip
        if err is not None:
            raise err

    async def reset(self, entry: Any) -> bool:
        conn = entry.conn
        action = self._begin_reset(entry)
        if action == 0:
            return False
        if action == 2:
            await conn.rollback()
        st = entry.data
        if st is not None and not st.same(conn):
            for name, value in changes(st, conn) or ():
                if name in ASYNC_SETTERS:
                    await getattr(conn, f"set_{name}")(value)
                else:
                    setattr(conn, name, value)
        if self._needs_deallocate(st):
            await run_autocommit_async(conn, "DEALLOCATE ALL")
        sql = self._recycle_sql
        if sql is not None:
            await run_autocommit_async(conn, sql)
            self._drop_backlog(conn)
        return self.target_session_attrs is None or not self.role_changed(conn)

    async def finish(self, conn: Any, ok: bool) -> None:
        action = self.finish_action(conn, ok)
        if action == 1:
            await conn.commit()
        elif action == 2:
            await conn.rollback()
