"""PgBouncer in transaction mode: ``transaction_pooling=True`` against a real pgbouncer of our own.

Every transaction may run on another server session: prepared statements
must be off, and what needs a session is refused with a clear error.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import fastpool
from fastpool import AsyncConnectionPool, AsyncOwnership, AsyncPool, AsyncSandbox, Recycle

from .acompat import run_all_async
from .conftest import check_invariants

pytestmark = pytest.mark.db

if True:  # ASYNC  # noqa: SIM108
    WORKERS = 64
else:
    WORKERS = 16
BORROWS = 10


async def workload(pool: Any) -> list[BaseException]:
    """WORKERS workers x BORROWS borrows: the same parametrized query 10 times, then a transaction."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    async def worker(i: int) -> None:
        for j in range(BORROWS):
            try:
                async with pool.connection() as conn:
                    for k in range(10):  # past psycopg's prepare threshold (5)
                        cur = await conn.execute("SELECT %s::int + %s::int", (i, k))
                        assert await cur.fetchone() == (i + k,)
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS t (x int) ON COMMIT DROP")
                    await conn.execute("INSERT INTO t VALUES (%s)", (j,))
                    cur = await conn.execute("SELECT count(*) FROM t")
                    assert await cur.fetchone() == (1,)
            except Exception as exc:
                with lock:
                    errors.append(exc)

    await run_all_async(worker, WORKERS)
    return errors


async def test_transaction_pooling_through_pgbouncer(build: str, pgbouncer: Any) -> None:
    pool = AsyncPool(pgbouncer.dsn, max_size=8, transaction_pooling=True, open=False)
    try:
        assert pool.transaction_pooling
        errors = await workload(pool)
        assert not errors, f"{len(errors)} errors, the first: {errors[0]!r}"
        s = check_invariants(pool)
        assert s["in_use"] == 0 and s["size"] <= 8
        await pool.clear_prepared()  # nothing to deallocate, and nothing sent that needs a session
    finally:
        await pool.close()


async def test_without_it_prepared_statements_break(build: str, pgbouncer: Any) -> None:
    # the control: the same workload without transaction_pooling fails on PgBouncer
    pool = AsyncPool(pgbouncer.dsn, max_size=8, open=False)
    try:
        errors = await workload(pool)
        assert any("prepared statement" in str(e) for e in errors), errors[:3]
    finally:
        await pool.close()


async def test_psycopg_pool_surface_with_transaction_pooling(build: str, pgbouncer: Any) -> None:
    async with AsyncConnectionPool(pgbouncer.dsn, min_size=2, transaction_pooling=True, open=False) as pool:
        errors = await workload(pool)
        assert not errors, errors[:3]


async def test_what_needs_a_session_is_refused(build: str, pgbouncer: Any) -> None:
    pool = AsyncPool(pgbouncer.dsn, max_size=2, transaction_pooling=True, open=False)
    try:
        for attempt in (
            lambda: pool.leadership("job"),
            lambda: AsyncOwnership(pool),
            lambda: AsyncSandbox(pool),
        ):
            with pytest.raises(ValueError, match="transaction pooling"):
                attempt()
        with pytest.raises(ValueError, match="transaction pooling"):
            await pool.try_leadership("job")
    finally:
        await pool.close()
    for recycle in (Recycle.CLEAN, Recycle.custom("DISCARD ALL")):
        with pytest.raises(ValueError, match="transaction pooling"):
            AsyncPool(pgbouncer.dsn, transaction_pooling=True, recycle=recycle, open=False)
        with pytest.raises(ValueError, match="transaction pooling"):
            AsyncConnectionPool(pgbouncer.dsn, transaction_pooling=True, recycle=recycle, open=False)
    with pytest.raises(TypeError, match="transaction_pooling"):
        AsyncPool(pgbouncer.dsn, transaction_pooling="yes", open=False)  # type: ignore[arg-type]
    assert issubclass(fastpool.PoolTimeout, Exception)
