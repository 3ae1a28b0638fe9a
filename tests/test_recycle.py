"""Recycling methods and reset on return, on the real server (SPEC T002), both twins."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import fastpool
from fastpool import Recycle

from .conftest import backends, check_invariants, wait_until

pytestmark = pytest.mark.db

IDLE = psycopg.pq.TransactionStatus.IDLE


def pid_of(conn: Any) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


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


def test_recycle_values() -> None:
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


def test_recycle_option_is_checked(twin: str, dsn: str) -> None:
    with pytest.raises(TypeError, match="recycle"):
        fastpool.Pool(dsn, recycle="CLEAN", open=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", [Recycle.FAST, Recycle.VERIFIED, Recycle.CLEAN])
def test_terminated_idle_backend_never_reaches_the_user(
    make_pool: Any, admin: Any, app_name: str, method: Recycle
) -> None:
    # T002-01 (and the probe for every method)
    pool = make_pool(max_size=2, recycle=method, test_before_acquire=False)
    with pool.connection() as conn:
        pid = pid_of(conn)
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert wait_until(
        lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid=%s", (pid,)).fetchone()
    )
    with pool.connection() as conn:
        assert pid_of(conn) != pid
    check_invariants(pool)


def test_verified_checks_at_every_hand_out(make_pool: Any, admin: Any) -> None:
    # T002-02
    pool = make_pool(max_size=1, recycle=Recycle.VERIFIED, verify_after=3600)
    with pool.connection() as conn:
        pid = pid_of(conn)
    before = pool.stats()["health_checks"]
    for _ in range(3):
        with pool.connection() as conn:
            assert conn.info.transaction_status == IDLE, "the empty query ran in autocommit"
            last = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            assert last == ("",), "the last statement the server saw is the empty query"
            pid_of(conn)
    assert pool.stats()["health_checks"] - before == 3


def test_fast_does_no_round_trip_when_hot(make_pool: Any) -> None:
    pool = make_pool(max_size=1, recycle=Recycle.FAST, verify_after=3600)
    for _ in range(5):
        with pool.connection():
            pass
    assert pool.stats()["health_checks"] == 0


def test_clean_leaves_nothing_for_the_next_borrower(
    make_pool: Any, admin: Any, role: str, names: dict[str, str]
) -> None:
    # T002-03
    pool = make_pool(max_size=1, recycle=Recycle.CLEAN)
    with pool.acquire() as conn:
        conn.autocommit = True
        pid = pid_of(conn)
        conn.execute("SET search_path = pg_catalog")
        conn.execute("SELECT set_config('app.tenant', '42', false)")
        conn.execute(f"LISTEN {names['chan']}")
        admin.execute(f"NOTIFY {names['chan']}, 'stale'")
        time.sleep(0.05)
        conn.execute("SELECT 1")  # psycopg receives the NOTIFY into its backlog
        conn.execute("SELECT pg_advisory_lock(4242)")
        conn.execute("CREATE TEMP TABLE fastpool_tmp (x int)")
        conn.execute(f"SELECT nextval('public.{names['seq']}')")
        with conn.transaction():
            conn.execute("DECLARE fastpool_held CURSOR WITH HOLD FOR SELECT 1")
        conn.execute(f"SET SESSION AUTHORIZATION {role}")
        conn.execute(f"SET ROLE {role}")
    with pool.connection() as conn:
        assert pid_of(conn) == pid, "same backend: the test is about what it carries"
        assert conn.execute("SELECT current_user, session_user").fetchone() == ("postgres", "postgres")
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SELECT current_setting('app.tenant', true)").fetchone()[0] in ("", None)
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
        assert list(conn.notifies(timeout=0.2)) == []
        locks = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()
        assert locks == (0,)
        assert conn.execute("SELECT to_regclass('pg_temp.fastpool_tmp')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            conn.execute(f"SELECT currval('public.{names['seq']}')")


def test_fast_carries_session_state_as_documented(make_pool: Any) -> None:
    # the docs say plainly what FAST keeps: prove the test above can fail
    pool = make_pool(max_size=1, recycle=Recycle.FAST)
    with pool.connection() as conn:
        conn.execute("SELECT set_config('app.tenant', '42', false)")
    with pool.connection() as conn:
        assert conn.execute("SELECT current_setting('app.tenant', true)").fetchone() == ("42",)


@pytest.mark.parametrize("threshold", [0, None])
def test_clean_keeps_prepared_statements_and_startup_params(make_pool: Any, threshold: int | None) -> None:
    # T002-04
    kwargs: dict[str, Any] = {"options": "-c search_path=pg_catalog,public"}
    if threshold is not None:
        kwargs["prepare_threshold"] = threshold
    pool = make_pool(max_size=1, recycle=Recycle.CLEAN, kwargs=kwargs)
    query = "SELECT %s::int + 1"
    with pool.connection() as conn:
        for i in range(6):  # past the default threshold of 5
            conn.execute(query, (i,))
        n = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        assert n >= 1
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == n
        assert conn.execute(query, (41,)).fetchone() == (42,)
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog,public",)
        app = conn.execute("SHOW application_name").fetchone()[0]
        assert app.startswith("fastpool-test-")


def test_custom_discard_all_clears_psycopg_cache_too(make_pool: Any) -> None:
    # T002-05
    pool = make_pool(max_size=1, recycle=Recycle.custom("DISCARD ALL"), kwargs={"prepare_threshold": 0})
    with pool.connection() as conn:
        conn.execute("SELECT %s::int", (1,))
    with pool.connection() as conn:
        stmts = [r[0] for r in conn.execute("SELECT statement FROM pg_prepared_statements")]
        assert not any("$1::int" in st for st in stmts), "DISCARD ALL dropped it on the server"
        assert conn.execute("SELECT %s::int", (2,)).fetchone() == (2,), "and psycopg knows it"


def test_custom_bad_sql_discards_with_a_warning(
    make_pool: Any, admin: Any, app_name: str, caplog: Any
) -> None:
    # T002-06
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = make_pool(max_size=1, recycle=Recycle.custom("SELEKT nonsense"))
    with pool.connection() as conn:
        pid = pid_of(conn)
    assert wait_until(lambda: pid not in backends(admin, app_name))
    assert "syntax error" in caplog.text
    s = check_invariants(pool)
    assert s["discarded"] == 1 and s["size"] <= 1
    with pool.connection() as conn:
        assert pid_of(conn) != pid


def test_client_state_is_restored(make_pool: Any) -> None:
    # T002-08
    pool = make_pool(max_size=1)
    notices: list[Any] = []
    with pool.connection() as conn:
        conn.autocommit = True
        conn.row_factory = dict_row  # type: ignore[assignment]
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        conn.read_only = True
        conn.prepare_threshold = None
        conn.add_notice_handler(notices.append)
        conn.add_notify_handler(lambda n: None)
    with pool.connection() as conn:
        assert conn.autocommit is False
        assert conn.execute("SELECT 1 AS x").fetchone() == (1,)
        assert conn.isolation_level is None and conn.read_only is None
        assert conn.prepare_threshold == 5
        assert conn._notice_handlers == [] and conn._notify_handlers == []
    assert notices == []


def test_clear_prepared_after_ddl(make_pool: Any, admin: Any, names: dict[str, str]) -> None:
    # T002-09
    table = names["table"]
    pool = make_pool(max_size=3, min_size=3, kwargs={"prepare_threshold": 0})

    def prepare_everywhere() -> None:
        held = [pool.acquire() for _ in range(3)]
        for h in held:
            h.connection.execute(f"SELECT * FROM {table}").fetchall()
            h.connection.commit()
        for h in held:
            h.release()

    prepare_everywhere()
    admin.execute(f"ALTER TABLE {table} ADD COLUMN extra int")
    # control: without clear_prepared the cached plan breaks
    with pool.connection() as conn, pytest.raises(psycopg.errors.FeatureNotSupported, match="cached plan"):
        conn.execute(f"SELECT * FROM {table}")
    pool.clear_prepared()
    held = [pool.acquire() for _ in range(3)]
    try:
        for h in held:
            assert h.connection.execute(f"SELECT * FROM {table}").fetchall() == []
    finally:
        for h in held:
            h.release()


def test_a_connection_holding_a_lock_is_never_idled(make_pool: Any, admin: Any, app_name: str) -> None:
    # the core's taint barrier, whatever the recycling method
    pool = make_pool(max_size=1, recycle=Recycle.FAST)
    pc = pool.acquire()
    pid = pid_of(pc.connection)
    pc.connection.execute("SELECT pg_advisory_lock(77)")
    pc._entry.locks_held = 1  # what the leadership guard will do
    pc.release()
    assert wait_until(lambda: pid not in backends(admin, app_name))
    with pool.connection() as conn:
        assert pid_of(conn) != pid
        assert conn.execute("SELECT pg_try_advisory_lock(77)").fetchone() == (True,)


def test_with_conn_inside_a_borrow_does_not_close_it(make_pool: Any) -> None:
    # psycopg's own `with conn:` commits and, for a pooled connection, keeps it open
    pool = make_pool(max_size=1)
    with pool.connection() as conn, conn:
        conn.execute("SELECT 1")
    assert not conn.closed
    with pool.connection() as conn2:
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
def test_each_client_setting_alone_is_restored(make_pool: Any, change: str) -> None:
    """The borrow path's unchanged-settings check must notice any single change (both twins)."""
    pool = make_pool(max_size=1)
    with pool.connection() as conn:
        default_cursor = conn.cursor_factory
    with pool.connection() as conn:
        if change == "autocommit":
            conn.autocommit = True
        elif change == "row_factory":
            conn.row_factory = dict_row  # type: ignore[assignment]
        elif change == "isolation_level":
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        elif change == "read_only":
            conn.read_only = True
        elif change == "deferrable":
            conn.deferrable = True
        elif change == "cursor_factory":
            conn.cursor_factory = psycopg.ClientCursor
        elif change == "prepare_threshold":
            conn.prepare_threshold = 1
        elif change == "notice_handler":
            conn.add_notice_handler(lambda d: None)
        else:
            conn.add_notify_handler(lambda n: None)
    with pool.connection() as conn:
        assert conn.autocommit is False
        assert conn.execute("SELECT 1 AS x").fetchone() == (1,)
        assert conn.isolation_level is None and conn.read_only is None and conn.deferrable is None
        assert conn.cursor_factory is default_cursor
        assert conn.prepare_threshold == 5
        assert conn._notice_handlers == [] and conn._notify_handlers == []
