"""The psycopg 3 driver of the asyncio pools: opening, checking, resetting, closing.

What the driver does is described in ``_psycopg_base``, which holds its
I/O-free part, shared with the driver of the other kind of pool.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import pq

from .psycopg_base import ASYNC_SETTERS, PsycopgDriverBase, changes, forget_prepared

__all__ = ["AsyncPsycopgDriver", "AsyncPsycopgSession", "run_autocommit_async"]

logger = logging.getLogger("fastpool")

_OK = pq.ConnStatus.OK


async def run_autocommit_async(conn: Any, sql: str) -> None:
    """Run ``sql`` in one simple-protocol round trip with autocommit on.

    After ``DISCARD ALL`` or ``DEALLOCATE ALL`` psycopg's prepared-statement cache is
    forgotten too (psycopg itself notices only some of these commands, depending on its
    version).
    """
    if conn._autocommit:
        await conn.execute(sql, prepare=False)
    else:
        await conn.set_autocommit(True)
        try:
            await conn.execute(sql, prepare=False)
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)
    forget_prepared(conn, sql)


class AsyncPsycopgDriver(PsycopgDriverBase):
    """Opens psycopg ``AsyncConnection`` objects for the asyncio pools (internal)."""

    connection_base = psycopg.AsyncConnection

    @property
    def session(self) -> AsyncPsycopgSession:
        """What the session features (leadership, the sandbox) run on this driver's connections."""
        return _SESSION

    async def connect(self) -> Any:
        if self.dynamic:
            conninfo, kwargs = await self._params_async()
        else:
            conninfo, kwargs = self.conninfo, self.kwargs
        conn = await self.connection_class.connect(conninfo, **kwargs)
        conn._pool = self  # psycopg only needs close_returns/putconn (the pool replaces it while lent)
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
        log = self.log
        if action == 0 and conn.pgconn.status == _OK:  # returned mid-query: its state is unknown
            log.warning("closing returned connection: %s", conn)
            await self.close(conn)
        elif action == 2:  # returned in a transaction: rolled back, as documented
            log.log(self.rollback_level, "rolling back returned connection: %s", conn)
            try:
                await conn.rollback()
            except Exception as exc:
                log.warning(
                    "rollback failed: %s: %s. Discarding connection %s",
                    type(exc).__name__,
                    self.redact(str(exc)),
                    conn,
                )
                await self.close(conn)
        if conn.pgconn.status != _OK:
            log.warning("discarding closed connection: %s", conn)
            return False
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


class AsyncPsycopgSession:
    """What fastpool's session features (leadership, the sandbox) do on a psycopg connection.

    SQL is written with ``%s`` placeholders; each driver's session runs it its way.
    """

    __slots__ = ()

    async def value(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row of ``sql`` (None when no row), in one round trip."""
        cur = await conn.execute(sql, params, prepare=False)
        row = await cur.fetchone()
        return row[0] if row else None

    async def run(self, conn: Any, sql: str) -> None:
        """Run ``sql`` (one or more statements, simple protocol)."""
        await conn.execute(sql.encode(), prepare=False)

    def idle(self, conn: Any) -> bool:
        """True when no transaction is open on ``conn``."""
        return bool(conn.pgconn.transaction_status == _IDLE)

    def gone(self, conn: Any) -> bool:
        """True when ``conn`` is closed or broken."""
        return bool(conn.closed or conn.broken)

    async def rollback(self, conn: Any) -> None:
        """Roll back the open transaction."""
        await conn.rollback()

    async def autocommit(self, conn: Any) -> None:
        """Let every statement commit on its own (the pool's reset restores the setting)."""
        await conn.set_autocommit(True)

    def backend_pid(self, conn: Any) -> int:
        """The server process of ``conn``."""
        return int(conn.info.backend_pid)

    def status(self, conn: Any) -> str:
        """``"idle"``, ``"intrans"``, ``"inerror"`` or ``"other"``: where ``conn``'s transaction is."""
        return _STATUS.get(conn.pgconn.transaction_status, "other")

    async def begin_sandbox(self, conn: Any, isolation: str | None) -> None:
        """Open the sandbox transaction; the code under test cannot commit it through the API."""
        if isolation is not None:  # (the pool's reset restores it at return)
            await conn.set_isolation_level(psycopg.IsolationLevel[isolation.upper()])
        await psycopg.AsyncTransaction(conn).__aenter__()  # psycopg now forbids commit()/rollback()

    async def end_sandbox(self, conn: Any) -> None:
        """Roll the sandbox transaction back and drop the advisory locks taken in it."""
        try:
            await conn.execute(b"ROLLBACK; SELECT pg_advisory_unlock_all()", prepare=False)
        finally:
            conn._num_transactions = 0  # the transaction entered in begin_sandbox is over


_STATUS = {
    pq.TransactionStatus.IDLE: "idle",
    pq.TransactionStatus.INTRANS: "intrans",
    pq.TransactionStatus.INERROR: "inerror",
}
_IDLE = pq.TransactionStatus.IDLE


_SESSION = AsyncPsycopgSession()
