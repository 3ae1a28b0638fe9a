"""Recycling methods and the reset on return, on the real server, on both builds of the core."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import fastpool
from fastpool import Recycle

from .acompat import sleep_async, wait_until_async
from .conftest import backends, check_invariants

pytestmark = pytest.mark.db

IDLE = psycopg.pq.TransactionStatus.IDLE


async def pid_of_async(conn: Any) -> int:
    return int((await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0])


async def one_async(conn: Any, sql: str, params: Any = None) -> Any:
    return await (await conn.execute(sql, params)).fetchone()


@pytest.fixture
def role(admin: Any) -> str:
    admin.execute(
        "DO $$ BEGIN CREATE ROLE fastpool_tenant; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    return "fastpool_tenant"


@pytest.fixture
def names(admin: Any) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    n = {"seq": f"fastpool_seq_{tag}", "table": f"fastpool_t_{tag}", "chan": f"fastpool_chan_{tag}"}
    admin.execute(f"CREATE SEQUENCE {n['seq']}")
    admin.execute(f"CREATE TABLE {n['table']} (id int)")
    admin.execute(f"GRANT ALL ON {n['table']} TO PUBLIC")
    yield n
    admin.execute(f"DROP SEQUENCE IF EXISTS {n['seq']}")
    admin.execute(f"DROP TABLE IF EXISTS {n['table']}")


async def test_recycle_values() -> None:
    assert Recycle.FAST.query is None and Recycle.FAST.sql is None
    assert Recycle.VERIFIED.query == "" and Recycle.VERIFIED.sql is None
    assert Recycle.CLEAN.sql is not None and "pg_advisory_unlock_all()" in Recycle.CLEAN.sql
    assert "DISCARD ALL" not in Recycle.CLEAN.sql and "DEALLOCATE" not in Recycle.CLEAN.sql
    c = Recycle.custom("DISCARD ALL")
    assert (
        c.sql == "DISCARD ALL" and c == Recycle.custom("DISCARD ALL") and repr(c).startswith("Recycle.custom")
    )
    with pytest.raises(ValueError, match="recycle"):
        Recycle.custom("  ")
    with pytest.raises(TypeError, match="recycle"):
        Recycle.custom(42)  # type: ignore[arg-type]


async def test_recycle_option_is_checked(build: str, dsn: str) -> None:
    with pytest.raises(TypeError, match="recycle"):
        fastpool.AsyncPool(dsn, recycle="CLEAN", open=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", [Recycle.FAST, Recycle.VERIFIED, Recycle.CLEAN])
async def test_terminated_idle_backend_never_reaches_the_user(
    make_pool_async: Any, admin: Any, app_name: str, method: Recycle
) -> None:
    # the probe, for every method
    pool = await make_pool_async(max_size=2, recycle=method, test_before_acquire=False)
    async with pool.connection() as conn:
        pid = await pid_of_async(conn)
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert await wait_until_async(
        lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid=%s", (pid,)).fetchone()
    )
    async with pool.connection() as conn:
        assert await pid_of_async(conn) != pid
    check_invariants(pool)


async def test_verified_checks_at_every_hand_out(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1, recycle=Recycle.VERIFIED, verify_after=3600)
    async with pool.connection() as conn:
        pid = await pid_of_async(conn)
    before = pool.stats()["health_checks"]
    for _ in range(3):
        async with pool.connection() as conn:
            assert conn.info.transaction_status == IDLE, "the empty query ran in autocommit"
            last = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            assert last == ("",), "the last statement the server saw is the empty query"
            await pid_of_async(conn)
    assert pool.stats()["health_checks"] - before == 3


async def test_fast_does_no_round_trip_when_hot(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1, recycle=Recycle.FAST, verify_after=3600)
    for _ in range(5):
        async with pool.connection():
            pass
    assert pool.stats()["health_checks"] == 0


async def test_clean_leaves_nothing_for_the_next_borrower(
    make_pool_async: Any, admin: Any, role: str, names: dict[str, str]
) -> None:
    pool = await make_pool_async(max_size=1, recycle=Recycle.CLEAN)
    async with pool.acquire() as conn:
        await conn.set_autocommit(True)
        pid = await pid_of_async(conn)
        await conn.execute("SET search_path = pg_catalog")
        await conn.execute("SELECT set_config('app.tenant', '42', false)")
        await conn.execute(f"LISTEN {names['chan']}")
        admin.execute(f"NOTIFY {names['chan']}, 'stale'")
        await sleep_async(0.05)
        await conn.execute("SELECT 1")  # psycopg receives the NOTIFY into its backlog
        await conn.execute("SELECT pg_advisory_lock(4242)")
        await conn.execute("CREATE TEMP TABLE fastpool_tmp (x int)")
        await conn.execute(f"SELECT nextval('public.{names['seq']}')")
        async with conn.transaction():
            await conn.execute("DECLARE fastpool_held CURSOR WITH HOLD FOR SELECT 1")
        await conn.execute(f"SET SESSION AUTHORIZATION {role}")
        await conn.execute(f"SET ROLE {role}")
    async with pool.connection() as conn:
        assert await pid_of_async(conn) == pid, "same backend: the test is about what it carries"
        assert await one_async(conn, "SELECT current_user, session_user") == ("postgres", "postgres")
        assert await one_async(conn, "SHOW search_path") == ('"$user", public',)
        assert (await one_async(conn, "SELECT current_setting('app.tenant', true)"))[0] in ("", None)
        assert await one_async(conn, "SELECT count(*) FROM pg_listening_channels()") == (0,)
        assert [n async for n in conn.notifies(timeout=0.2)] == []
        locks = await one_async(
            conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert locks == (0,)
        assert await one_async(conn, "SELECT to_regclass('pg_temp.fastpool_tmp')") == (None,)
        assert await one_async(conn, "SELECT count(*) FROM pg_cursors") == (0,)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            await conn.execute(f"SELECT currval('public.{names['seq']}')")


async def test_fast_carries_session_state_as_documented(make_pool_async: Any) -> None:
    # the docs say plainly what FAST keeps: proof that the test above can fail
    pool = await make_pool_async(max_size=1, recycle=Recycle.FAST)
    async with pool.connection() as conn:
        await conn.execute("SELECT set_config('app.tenant', '42', false)")
    async with pool.connection() as conn:
        assert await one_async(conn, "SELECT current_setting('app.tenant', true)") == ("42",)


@pytest.mark.parametrize("threshold", [0, None])
async def test_clean_keeps_prepared_statements_and_startup_params(
    make_pool_async: Any, threshold: int | None
) -> None:
    kwargs: dict[str, Any] = {"options": "-c search_path=pg_catalog,public"}
    if threshold is not None:
        kwargs["prepare_threshold"] = threshold
    pool = await make_pool_async(max_size=1, recycle=Recycle.CLEAN, kwargs=kwargs)
    query = "SELECT %s::int + 1"
    async with pool.connection() as conn:
        for i in range(6):  # past the default threshold of 5
            await conn.execute(query, (i,))
        n = (await one_async(conn, "SELECT count(*) FROM pg_prepared_statements"))[0]
        assert n >= 1
    async with pool.connection() as conn:
        assert (await one_async(conn, "SELECT count(*) FROM pg_prepared_statements"))[0] == n
        assert await one_async(conn, query, (41,)) == (42,)
        assert await one_async(conn, "SHOW search_path") == ("pg_catalog,public",)
        app = (await one_async(conn, "SHOW application_name"))[0]
        assert app.startswith("fastpool-test-")


async def test_custom_discard_all_clears_psycopg_cache_too(make_pool_async: Any) -> None:
    pool = await make_pool_async(
        max_size=1, recycle=Recycle.custom("DISCARD ALL"), kwargs={"prepare_threshold": 0}
    )
    async with pool.connection() as conn:
        await conn.execute("SELECT %s::int", (1,))
    async with pool.connection() as conn:
        stmts = [r[0] async for r in await conn.execute("SELECT statement FROM pg_prepared_statements")]
        assert not any("$1::int" in st for st in stmts), "DISCARD ALL dropped it on the server"
        assert await one_async(conn, "SELECT %s::int", (2,)) == (2,), "and psycopg knows it"


async def test_custom_bad_sql_discards_with_a_warning(
    make_pool_async: Any, admin: Any, app_name: str, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = await make_pool_async(max_size=1, recycle=Recycle.custom("SELEKT nonsense"))
    async with pool.connection() as conn:
        pid = await pid_of_async(conn)
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))
    assert "syntax error" in caplog.text
    s = check_invariants(pool)
    assert s["discarded"] == 1 and s["size"] <= 1
    async with pool.connection() as conn:
        assert await pid_of_async(conn) != pid


async def test_client_state_is_restored(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1)
    notices: list[Any] = []
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        conn.row_factory = dict_row  # type: ignore[assignment]
        await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
        await conn.set_read_only(True)
        conn.prepare_threshold = None
        conn.add_notice_handler(notices.append)
        conn.add_notify_handler(lambda n: None)
    async with pool.connection() as conn:
        assert conn.autocommit is False
        assert await one_async(conn, "SELECT 1 AS x") == (1,)
        assert conn.isolation_level is None and conn.read_only is None
        assert conn.prepare_threshold == 5
        assert conn._notice_handlers == [] and conn._notify_handlers == []
    assert notices == []


async def test_clear_prepared_after_ddl(make_pool_async: Any, admin: Any, names: dict[str, str]) -> None:
    table = names["table"]
    pool = await make_pool_async(max_size=3, min_size=3, kwargs={"prepare_threshold": 0})
    held = [await pool.acquire() for _ in range(3)]
    for h in held:
        await (await h.connection.execute(f"SELECT * FROM {table}")).fetchall()
        await h.connection.commit()
    for h in held:
        await h.release()
    admin.execute(f"ALTER TABLE {table} ADD COLUMN extra int")
    # control: without clear_prepared the cached plan breaks
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="cached plan"):
        async with pool.connection() as conn:
            await conn.execute(f"SELECT * FROM {table}")
    await pool.clear_prepared()
    held = [await pool.acquire() for _ in range(3)]
    try:
        for h in held:
            assert await (await h.connection.execute(f"SELECT * FROM {table}")).fetchall() == []
    finally:
        for h in held:
            await h.release()


async def test_a_connection_holding_a_lock_is_never_idled(
    make_pool_async: Any, admin: Any, app_name: str
) -> None:
    # the core's taint barrier, whatever the recycling method
    pool = await make_pool_async(max_size=1, recycle=Recycle.FAST)
    pc = await pool.acquire()
    pid = await pid_of_async(pc.connection)
    await pc.connection.execute("SELECT pg_advisory_lock(77)")
    pc._entry.locks_held = 1  # what the leadership guard does
    await pc.release()
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))
    async with pool.connection() as conn:
        assert await pid_of_async(conn) != pid
        assert await one_async(conn, "SELECT pg_try_advisory_lock(77)") == (True,)


async def test_with_conn_inside_a_borrow_does_not_close_it(make_pool_async: Any) -> None:
    # psycopg's own `with conn:` commits and, for a pooled connection, keeps it open
    pool = await make_pool_async(max_size=1)
    async with pool.connection() as conn, conn:
        await conn.execute("SELECT 1")
    assert not conn.closed
    async with pool.connection() as conn2:
        assert conn2 is conn
    assert pool.stats()["discarded"] == 0


@pytest.mark.parametrize(
    "change",
    [
        "autocommit",
        "row_factory",
        "isolation_level",
        "read_only",
        "deferrable",
        "cursor_factory",
        "prepare_threshold",
        "notice_handler",
        "notify_handler",
    ],
)
async def test_each_client_setting_alone_is_restored(make_pool_async: Any, change: str) -> None:
    """The borrow path's unchanged-settings check must notice any single change (both builds)."""
    pool = await make_pool_async(max_size=1)
    async with pool.connection() as conn:
        default_cursor = conn.cursor_factory
    async with pool.connection() as conn:
        if change == "autocommit":
            await conn.set_autocommit(True)
        elif change == "row_factory":
            conn.row_factory = dict_row  # type: ignore[assignment]
        elif change == "isolation_level":
            await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
        elif change == "read_only":
            await conn.set_read_only(True)
        elif change == "deferrable":
            await conn.set_deferrable(True)
        elif change == "cursor_factory":
            conn.cursor_factory = psycopg.AsyncClientCursor
        elif change == "prepare_threshold":
            conn.prepare_threshold = 1
        elif change == "notice_handler":
            conn.add_notice_handler(lambda d: None)
        else:
            conn.add_notify_handler(lambda n: None)
    async with pool.connection() as conn:
        assert conn.autocommit is False
        assert await one_async(conn, "SELECT 1 AS x") == (1,)
        assert conn.isolation_level is None and conn.read_only is None and conn.deferrable is None
        assert conn.cursor_factory is default_cursor
        assert conn.prepare_threshold == 5
        assert conn._notice_handlers == [] and conn._notify_handlers == []
