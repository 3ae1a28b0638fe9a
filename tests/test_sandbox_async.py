"""The sandbox against the real server: isolation, savepoints, escapes, on both builds of the core."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from fastpool import AsyncSandbox, SandboxError, Status
from fastpool._surfaces.sandbox_base import begin_check

from .conftest import check_invariants, count_rows

pytestmark = pytest.mark.db


async def one_async(conn: Any, sql: str) -> Any:
    return await (await conn.execute(sql)).fetchone()


async def test_sandbox_isolation_and_rollback(make_pool_async: Any, admin: Any, table: str) -> None:
    # A's insert is invisible to B and to an outside connection, and gone afterwards
    pool = await make_pool_async(max_size=4)
    sb = AsyncSandbox(pool)
    a = await sb.start_owner(allow_current=False, name="test-a")
    b = await sb.start_owner(allow_current=False, name="test-b")
    async with a.connection() as conn:
        await conn.execute(f"INSERT INTO {table} (v) VALUES ('a')")
        assert await one_async(conn, f"SELECT count(*) FROM {table}") == (1,)
    async with b.connection() as conn:
        assert await one_async(conn, f"SELECT count(*) FROM {table}") == (0,)
    assert count_rows(admin, table) == 0
    await a.stop()
    await b.stop()
    assert count_rows(admin, table) == 0
    assert check_invariants(pool)["in_use"] == 0


async def test_nested_transaction_and_failed_statement(make_pool_async: Any, table: str) -> None:
    sb = AsyncSandbox(await make_pool_async(max_size=2))
    async with sb.start_owner() as owner:
        async with sb.connection() as conn:
            await conn.execute(f"INSERT INTO {table} (v) VALUES ('kept')")
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with conn.transaction():  # a savepoint
                    await conn.execute(f"INSERT INTO {table} (v) VALUES ('inner')")
                    await conn.execute("SELECT 1/0")
            assert [r[0] async for r in await conn.execute(f"SELECT v FROM {table}")] == ["kept"]
            with pytest.raises(psycopg.ProgrammingError, match="forbidden"):
                await conn.commit()  # psycopg forbids it inside the sandbox's transaction
        with pytest.raises(psycopg.errors.UndefinedTable):
            async with sb.connection() as conn:
                await conn.execute("SELECT * FROM no_such_table")
        async with sb.connection() as conn:  # the failed borrow did not poison this one
            assert await one_async(conn, f"SELECT count(*) FROM {table}") == (1,)
        async with sb.connection() as conn:  # an error swallowed in the block: rolled back to its savepoint
            try:
                await conn.execute("SELECT 1/0")
            except psycopg.errors.DivisionByZero:
                pass
        async with owner.connection() as conn:
            assert await one_async(conn, f"SELECT count(*) FROM {table}") == (1,)


async def test_raw_commit_is_reported_and_discarded(make_pool_async: Any, admin: Any, table: str) -> None:
    pool = await make_pool_async(max_size=2)
    sb = AsyncSandbox(pool)
    owner = await sb.start_owner()
    with pytest.raises(SandboxError, match="already committed"):
        async with sb.connection() as conn:
            pid = conn.info.backend_pid
            await conn.execute(f"INSERT INTO {table} (v) VALUES ('escaped')")
            await conn.execute("COMMIT")
    with pytest.raises(SandboxError, match="already committed"):
        await owner.stop()
    assert count_rows(admin, table) == 1  # it escaped: that is what the error says
    async with pool.connection() as conn:
        assert conn.info.backend_pid != pid  # the connection was discarded
    assert check_invariants(pool)["in_use"] == 0


async def test_unboxed_run_persists(make_pool_async: Any, admin: Any, table: str) -> None:
    sb = AsyncSandbox(await make_pool_async(max_size=2))
    async with sb.start_owner():
        await sb.unboxed_run(lambda conn: conn.execute(f"INSERT INTO {table} (v) VALUES ('outside')"))
        async with sb.connection() as conn:
            await conn.execute(f"INSERT INTO {table} (v) VALUES ('inside')")
    assert [r[0] for r in admin.execute(f"SELECT v FROM {table}")] == ["outside"]


async def test_isolation_and_advisory_locks(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=2)
    sb = AsyncSandbox(pool, isolation="serializable")
    sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s"
    async with sb.start_owner():
        async with sb.connection() as conn:
            assert await one_async(conn, "SHOW transaction_isolation") == ("serializable",)
            await conn.execute("SELECT pg_advisory_lock(4242)")
            pid = conn.info.backend_pid
        assert admin.execute(sql, (pid,)).fetchone() == (1,)
    assert admin.execute(sql, (pid,)).fetchone() == (0,)  # unlocked at checkin
    async with pool.connection() as conn:
        assert conn.info.backend_pid == pid  # returned, reset to the pool's defaults
        assert await one_async(conn, "SHOW transaction_isolation") == ("read committed",)
        await conn.commit()
        await conn.set_autocommit(True)  # psycopg's transaction bookkeeping was cleaned up too
    with pytest.raises(ValueError, match="isolation"):
        AsyncSandbox(pool, isolation="sometimes")


async def test_checkout_over_a_running_transaction_refuses(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1)
    sb = AsyncSandbox(pool, ownership_timeout=None)
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
        with pytest.raises(SandboxError, match="already running"):
            begin_check(pool._driver.session.status(conn))
    assert await sb.checkout() is Status.OK
    assert await sb.checkin() is Status.OK
