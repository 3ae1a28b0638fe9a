"""fastpool on asyncpg: ``AsyncPool(driver="asyncpg")`` against the real server, on both builds.

Sizing and hand-out, the return path, recycling, hooks, the options, failing
fast and secrets; the adversarial cases (terminated backends, a frozen network
path, a server restart, 64 tasks racing) are in ``test_asyncpg_faults.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

import fastpool
from fastpool import ConnectionMetadata, PoolTimeout, Recycle

from .conftest import backends, check_invariants

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.db


async def terminate_own(admin: Any, app: str, pids: set[int] | None = None) -> set[int]:
    """Terminate this test's backends (``application_name`` = ``app``), selected first by pid."""
    mine = backends(admin, app) if pids is None else pids
    for pid in mine:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 5
    while backends(admin, app) & mine and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return mine


# -- sizing and hand-out --------------------------------------------------------------------------


async def test_hands_out_asyncpg_connections(make_apg: Any, app_name: str) -> None:
    pool = await make_apg(max_size=2)
    async with pool.connection() as conn:
        assert isinstance(conn, asyncpg.Connection)
        assert await conn.fetchval("SELECT current_setting('application_name')") == app_name
    pc = await pool.acquire()
    assert await pc.connection.fetchval("SELECT 41 + 1") == 42
    await pc.release()
    got = pool.try_acquire()
    assert got is not None
    await got.release()
    c = await pool.getconn()
    await pool.putconn(c)
    assert pool.driver == "asyncpg"
    check_invariants(pool)


async def test_min_size_is_a_floor_kept_in_the_background(make_apg: Any, admin: Any, app_name: str) -> None:
    pool = await make_apg(min_size=3, max_size=5)
    await pool.wait(5)
    first = backends(admin, app_name)
    assert len(first) == 3
    requests = pool.stats()["requests"]
    await terminate_own(admin, app_name, first)
    deadline = time.monotonic() + 5  # replenished without any acquire
    while len(backends(admin, app_name) - first) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pool._reap()  # (the reaper's tick, now rather than in idle_timeout / 2)
    assert len(backends(admin, app_name) - first) == 3
    assert pool.stats()["requests"] == requests, "no caller made them"


async def test_waiters_are_served_first_come_first_served(make_apg: Any) -> None:
    pool = await make_apg(max_size=1)
    order: list[int] = []
    held = await pool.acquire()

    async def waiter(i: int) -> None:
        async with pool.connection() as conn:
            order.append(i)
            await conn.execute("SELECT 1")

    tasks = []
    for i in range(20):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0.001)
    await held.release()
    await asyncio.gather(*tasks)
    assert order == list(range(20))
    assert pool.stats()["handoffs"] >= 20


async def test_acquire_timeout_bounds_every_phase(make_apg: Any) -> None:
    async def slow(conn: Any, meta: ConnectionMetadata) -> bool:
        await conn.execute("SELECT pg_sleep(5)")
        return True

    pool = await make_apg(max_size=1, before_acquire=slow, open=False)
    async with pool.connection():  # a new connection: no before_acquire
        pass
    start = time.monotonic()
    with pytest.raises(PoolTimeout):
        async with pool.connection(timeout=0.5):
            pass
    assert time.monotonic() - start < 0.6, "the hook's round trip is bounded by the caller's deadline"
    s = check_invariants(pool)
    assert s["in_use"] == 0


async def test_a_backend_terminated_while_idle_never_reaches_a_caller(
    make_apg: Any, admin: Any, app_name: str
) -> None:
    pool = await make_apg(max_size=4, min_size=4, test_before_acquire=False)
    await pool.wait(5)
    for _ in range(3):
        killed = await terminate_own(admin, app_name)
        assert killed
        # asyncpg reads what the server sends while a connection is idle: a FATAL read in the
        # instant before the backend closes its socket leaves nothing for the I/O-free probe to
        # see (docs/asyncpg.md says so); once the server has closed the socket, the probe sees it
        await asyncio.sleep(0.05)
        for _ in range(8):
            async with pool.connection() as conn:
                assert conn.get_server_pid() not in killed
                assert await conn.fetchval("SELECT 1") == 1
    assert pool.stats()["discarded"] + pool.stats()["dead_idle_closed"] >= 3  # (LIFO: not every one popped)


async def test_verified_round_trip_after_verify_after(make_apg: Any) -> None:
    pool = await make_apg(max_size=1, verify_after=0.05)
    async with pool.connection():
        pass
    checks = pool.stats()["health_checks"]
    async with pool.connection():  # idle for less than verify_after: no round trip
        pass
    assert pool.stats()["health_checks"] == checks
    await asyncio.sleep(0.1)
    async with pool.connection():
        pass
    assert pool.stats()["health_checks"] == checks + 1
    verified = await make_apg(max_size=1, recycle=Recycle.VERIFIED)
    for _ in range(3):
        async with verified.connection():
            pass
    assert verified.stats()["health_checks"] >= 2


# -- the return path ---------------------------------------------------------------------------------


async def test_an_open_transaction_is_rolled_back(make_apg: Any, caplog: Any) -> None:
    """Rolled back, and said at INFO: on fastpool's own pools that is the documented contract."""
    caplog.set_level(logging.INFO, logger="fastpool")
    pool = await make_apg(max_size=1)
    async with pool.connection() as conn:
        await conn.execute("CREATE TEMP TABLE t_rb (x int)")
    async with pool.connection() as conn:
        tr = conn.transaction()
        await tr.start()
        await conn.execute("INSERT INTO t_rb VALUES (1)")
    async with pool.connection() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM t_rb") == 0
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO t_rb VALUES (2)")
    async with pool.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM t_rb") == 0
    rolled = [r for r in caplog.records if "rolling back returned connection" in r.message]
    assert rolled and all(r.levelno == logging.INFO for r in rolled)


async def test_returned_mid_query_or_with_a_cancel_pending_is_discarded(make_apg: Any) -> None:
    """A borrower cancelled in its query or its COPY returns its connection with asyncpg's cancel
    request pending; one whose fetch another task still runs returns it mid-operation: both are
    closed, and the next borrower gets a connection that works."""
    pool = await make_apg(max_size=1)
    statements = ("SELECT pg_sleep(1)", "COPY (SELECT generate_series(1, 10000000)) TO STDOUT")

    async def borrower(stmt: str, started: asyncio.Event) -> None:
        async with pool.connection() as conn:
            started.set()  # the waiter wakes after this task has sent its statement
            if stmt.startswith("COPY"):
                await conn.copy_from_query(stmt[6:-11], output=lambda b: asyncio.sleep(0.01))
            else:
                await conn.execute(stmt)

    for stmt in statements:
        for _ in range(3):
            started = asyncio.Event()
            task = asyncio.create_task(borrower(stmt, started))
            await asyncio.wait_for(started.wait(), 10)  # however slow the connect, cancel mid-statement
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with pool.connection() as conn:
                assert await conn.fetchval("SELECT 1") == 1
    assert pool.stats()["returns_bad"] == 6
    for _ in range(3):
        pc = await pool.acquire()
        fetch = asyncio.create_task(pc.connection.fetch("SELECT pg_sleep(0.3), $1::int", 1))
        await asyncio.sleep(0.05)
        await pc.release()  # while its fetch runs
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(
            (asyncpg.exceptions.InterfaceError, asyncpg.exceptions.ConnectionDoesNotExistError)
        ):
            await fetch  # (its connection was closed under it)
    assert pool.stats()["returns_bad"] == 9
    check_invariants(pool)


async def test_what_asyncpg_tracks_on_the_client_is_undone(make_apg: Any) -> None:
    pool = await make_apg(max_size=1)

    def cb(*args: Any) -> None:
        pass

    async with pool.connection() as conn:
        await conn.add_listener("chan_a", cb)
        conn.add_log_listener(cb)
        conn.add_termination_listener(cb)
        conn.add_query_logger(cb)
        assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 1
    async with pool.connection() as conn:
        assert not conn._listeners and not conn._log_listeners
        assert not conn._termination_listeners and not conn._query_loggers
        assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0


async def test_fast_return_sends_nothing_when_the_borrower_changed_nothing(make_apg: Any) -> None:
    pool = await make_apg(max_size=1)
    async with pool.connection() as conn:
        proto = conn._protocol
        await conn.fetchval("SELECT 1")
    sent = proto.queries_count
    for _ in range(5):
        async with pool.connection() as conn:
            await conn.fetchval("SELECT 1")
    assert proto.queries_count == sent + 5, "one query per borrow, and nothing more"


# -- recycling ---------------------------------------------------------------------------------------


async def _session_leaks(pool: Any) -> dict[str, bool]:
    """What the next borrower sees of what the previous one left (the asyncpg column of docs/recycling.md)."""
    async with pool.connection() as conn:
        await conn.execute("SET statement_timeout = '1234ms'")
        await conn.execute("SELECT pg_advisory_lock(pg_backend_pid())")
        await conn.execute("LISTEN leak_chan")
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS leak_t (x int)")
        await conn.execute("PREPARE leak_p AS SELECT 1")
    async with pool.connection() as conn:
        return {
            "SET": await conn.fetchval("SELECT current_setting('statement_timeout')") == "1234ms",
            "advisory lock": await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
            > 0,
            "LISTEN": await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") > 0,
            "temp table": await conn.fetchval("SELECT to_regclass('pg_temp.leak_t') IS NOT NULL"),
            "prepared statement": await conn.fetchval(
                "SELECT count(*) FROM pg_prepared_statements WHERE name = 'leak_p'"
            )
            > 0,
        }


async def test_recycling_methods_on_asyncpg(make_apg: Any) -> None:
    fast = await _session_leaks(await make_apg(max_size=1))
    assert fast == dict.fromkeys(fast, True), "FAST: a round trip only when the client saw a change"
    clean = await _session_leaks(await make_apg(max_size=1, recycle=Recycle.CLEAN))
    assert clean == {
        "SET": False,
        "advisory lock": False,
        "LISTEN": False,
        "temp table": True,  # asyncpg's reset query keeps them, as DISCARD ALL would not
        "prepared statement": True,
    }
    custom = await _session_leaks(await make_apg(max_size=1, recycle=Recycle.custom("DISCARD ALL")))
    assert custom == dict.fromkeys(custom, False)
    verified = await _session_leaks(await make_apg(max_size=1, recycle=Recycle.VERIFIED))
    assert verified == fast


# -- hooks -------------------------------------------------------------------------------------------


async def test_hooks_run_with_their_metadata(make_apg: Any) -> None:
    seen: list[tuple[str, ConnectionMetadata]] = []

    async def after_connect(conn: Any, meta: ConnectionMetadata) -> None:
        seen.append(("connect", meta))
        await conn.execute("SET application_name = 'hooked'")

    async def before_acquire(conn: Any, meta: ConnectionMetadata) -> bool:
        seen.append(("acquire", meta))
        return True

    def after_release(conn: Any, meta: ConnectionMetadata) -> bool:
        seen.append(("release", meta))
        return True

    pool = await make_apg(
        max_size=1, after_connect=after_connect, before_acquire=before_acquire, after_release=after_release
    )
    await asyncio.sleep(0.05)
    async with pool.connection() as conn:
        assert await conn.fetchval("SELECT current_setting('application_name')") == "hooked"
    kinds = [k for k, _ in seen]
    assert kinds[0] == "connect" and "acquire" in kinds and kinds[-1] == "release"
    acquire_meta = next(m for k, m in seen if k == "acquire")
    assert acquire_meta.idle_for >= 0.04


# -- failing fast, and secrets ------------------------------------------------------------------------


SECRET = "hunter2-apg"


def _chain(exc: BaseException | None) -> str:
    out = []
    while exc is not None:
        out.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


@pytest.mark.parametrize(
    "form",
    ["url", "keywords", "password kwarg", "function"],
)
async def test_no_password_anywhere(build: str, form: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpool")
    kwargs: dict[str, Any] = {}
    conninfo: Any = {
        "url": f"postgresql://postgres:{SECRET}@127.0.0.1:1/test",
        "keywords": f"host=127.0.0.1 port=1 user=postgres password={SECRET} dbname=test",
        "password kwarg": "postgresql://postgres@127.0.0.1:1/test",
        "function": lambda: f"postgresql://postgres:{SECRET}@127.0.0.1:1/test",
    }[form]
    if form == "password kwarg":
        kwargs["password"] = SECRET
    pool = fastpool.AsyncPool(
        conninfo, driver="asyncpg", kwargs=kwargs, open=False, acquire_timeout=1, fail_fast_after=0.3
    )
    try:
        with pytest.raises(PoolTimeout) as ei:
            await pool.acquire(timeout=0.5)
        assert "127.0.0.1:1" in str(ei.value) or form == "function"
        with pytest.raises(PoolTimeout) as ei2:
            await pool.acquire(timeout=0.5)
        texts = [_chain(ei.value), _chain(ei2.value), repr(pool), str(pool.stats())]
    finally:
        await pool.close()
    with pytest.raises(PoolTimeout) as ei3:
        await fastpool.AsyncPool.connect(conninfo, driver="asyncpg", kwargs=kwargs, acquire_timeout=0.5)
    texts += [_chain(ei3.value), caplog.text]
    for text in texts:
        assert SECRET not in text


async def test_the_breaker_refuses_at_once_while_the_server_is_unreachable(build: str) -> None:
    pool = fastpool.AsyncPool(
        "postgresql://postgres@127.0.0.1:1/test", driver="asyncpg", open=False, fail_fast_after=0.2
    )
    try:
        with pytest.raises(PoolTimeout):
            await pool.acquire(timeout=0.5)
        start = time.monotonic()
        with pytest.raises(PoolTimeout, match="fail_fast_after"):
            await pool.acquire(timeout=5)
        assert time.monotonic() - start < 0.1
        assert pool.stats()["breaker_open"]
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"database": "no_such_database_apg"}, "no_such_database_apg"),
        ({"user": "no_such_role_apg"}, "no_such_role_apg"),
        ({"server_settings": {"no_such_setting": "1"}}, "no_such_setting"),
    ],
)
async def test_permanent_errors_fail_every_waiter_at_once(
    build: str, dsn: str, kwargs: dict[str, Any], match: str
) -> None:
    pool = fastpool.AsyncPool(
        "host=127.0.0.1 dbname=test user=postgres", driver="asyncpg", kwargs=kwargs, open=False
    )
    try:
        start = time.monotonic()
        results = await asyncio.gather(*(pool.acquire(timeout=10) for _ in range(5)), return_exceptions=True)
        assert time.monotonic() - start < 3, "not retried until the deadline"
        assert all(isinstance(r, PoolTimeout) and match in str(r) for r in results), results
    finally:
        await pool.close()


async def test_the_threaded_pool_refuses_asyncpg() -> None:
    with pytest.raises(ValueError, match="asyncpg has no threaded API"):
        fastpool.Pool("postgresql://127.0.0.1/test", driver="asyncpg")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="driver must be one of"):
        fastpool.AsyncPool("postgresql://127.0.0.1/test", driver="mysql")  # type: ignore[call-overload]


async def test_conninfo_forms(build: str, dsn: str, app_name: str) -> None:
    forms: list[Any] = [
        f"postgresql://postgres@127.0.0.1/test?application_name={app_name}",
        f"host=127.0.0.1 dbname=test user=postgres application_name={app_name} connect_timeout=3",
        lambda: f"host=127.0.0.1 dbname=test user=postgres application_name={app_name}",
    ]

    async def coro_conninfo() -> str:
        return f"postgresql://postgres@127.0.0.1/test?application_name={app_name}"

    forms.append(coro_conninfo)
    for conninfo in forms:
        async with fastpool.AsyncPool(conninfo, driver="asyncpg", max_size=1) as pool:
            async with pool.connection() as conn:
                assert await conn.fetchval("SELECT current_setting('application_name')") == app_name
    with pytest.raises(ValueError, match="keepalives"):
        fastpool.AsyncPool("host=127.0.0.1 keepalives=1", driver="asyncpg")


async def test_asyncpg_kwargs_reach_asyncpg(build: str, app_name: str) -> None:
    class MyRecord(asyncpg.Record):
        pass

    class MyConnection(asyncpg.Connection):
        pass

    kwargs = {
        "record_class": MyRecord,
        "statement_cache_size": 0,
        "server_settings": {"application_name": app_name},
    }
    async with fastpool.AsyncPool(
        "postgresql://postgres@127.0.0.1/test", driver="asyncpg", kwargs=kwargs, connection_class=MyConnection
    ) as pool:
        async with pool.connection() as conn:
            assert isinstance(conn, MyConnection)
            row = await conn.fetchrow("SELECT current_setting('application_name') AS a")
            assert isinstance(row, MyRecord) and row["a"] == app_name


# -- the rest of the options ------------------------------------------------------------------------------


async def test_lifetimes_and_uses(make_apg: Any) -> None:
    pool = await make_apg(max_size=1, max_uses=3)
    ids = []
    for _ in range(7):
        async with pool.connection() as conn:
            ids.append(conn.get_server_pid())
    assert len(set(ids)) >= 2, "retired after max_uses borrows"
    short = await make_apg(max_size=1, max_lifetime=0.2)
    async with short.connection() as conn:
        first = conn.get_server_pid()
    await asyncio.sleep(0.3)
    async with short.connection() as conn:
        assert conn.get_server_pid() != first


async def test_pause_resume_drain_resize_and_leaks(make_apg: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = await make_apg(max_size=2, leak_timeout=0.1)
    pool.pause()
    waiter = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    pool.resume()
    pc = await waiter
    await asyncio.sleep(0.4)  # held past leak_timeout
    assert pool.stats()["leaks"] == 1 and "leak_timeout" in caplog.text
    await pc.release()
    async with pool.connection() as conn:
        before = conn.get_server_pid()
    pool.drain()
    async with pool.connection() as conn:
        assert conn.get_server_pid() != before
    pool.resize(1, 3)
    assert pool.max_size == 3
    s = pool.stats()
    assert s["wait_time"]["count"] >= 1 and s["use_time"]["count"] >= 1


async def test_queue_target_sheds_load(make_apg: Any) -> None:
    pool = await make_apg(max_size=1, queue_target=0.01, queue_interval=0.05)

    async def user(i: int) -> None:
        await asyncio.sleep(i * 0.005)  # arrivals faster than one connection serves them
        async with pool.connection(timeout=5) as conn:
            await conn.execute("SELECT pg_sleep(0.02)")

    results = await asyncio.gather(*(user(i) for i in range(60)), return_exceptions=True)
    assert any(isinstance(r, fastpool.TooManyRequests) for r in results)
    assert pool.stats()["shed"] > 0


async def test_clear_prepared_on_asyncpg(make_apg: Any) -> None:
    pool = await make_apg(max_size=1)
    async with pool.connection() as conn:
        await conn.fetchval("SELECT $1::int", 1)
        assert len(conn._stmt_cache) >= 1
    await pool.clear_prepared()
    async with pool.connection() as conn:
        assert len(conn._stmt_cache) == 0
