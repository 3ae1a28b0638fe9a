"""The threaded psycopg Pool against the real PostgreSQL server (SPEC T004), both twins."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import fastpool
from fastpool import ConnectionMetadata, PoolClosed, PoolTimeout

from .conftest import backends, check_invariants, run_threads, wait_until

pytestmark = pytest.mark.db


def pid_of(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]


def terminate(admin: psycopg.Connection[Any], pid: int) -> None:
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert wait_until(
        lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    )


@pytest.fixture
def table(admin: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"fastpool_t_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE TABLE {name} (id int)")
    yield name
    admin.execute(f"DROP TABLE IF EXISTS {name}")


def test_plain_borrow_and_stats(make_pool: Any, admin: Any, app_name: str) -> None:
    pool = make_pool(max_size=2)
    assert isinstance(pool, fastpool.Pool)
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert len(backends(admin, app_name)) == 1
    assert "password" not in repr(pool) and pool.name in repr(pool)
    check_invariants(pool)


def test_racing_threads_real_connections(make_pool: Any, admin: Any, app_name: str) -> None:
    # T004-01 (threads): 64 threads on max_size 4; no pid is held by two borrowers
    pool = make_pool(max_size=4)
    in_use: set[int] = set()
    guard = threading.Lock()
    pids: dict[int, int] = {}

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(40):
            with pool.connection() as conn:
                key = id(conn)
                with guard:
                    assert key not in in_use, "connection handed out twice"
                    in_use.add(key)
                if key not in pids:
                    pids[key] = pid_of(conn)
                elif rnd.random() < 0.2:
                    conn.execute("SELECT 1")
                with guard:
                    in_use.discard(key)

    run_threads(worker, 64)
    s = check_invariants(pool)
    assert s["size"] <= 4 and s["in_use"] == 0 and s["waiting"] == 0
    assert len(backends(admin, app_name)) <= 4
    held = [pool.acquire(timeout=5) for _ in range(4)]
    assert len({pid_of(h.connection) for h in held}) == 4
    for h in held:
        h.release()


def test_deadline_when_exhausted(make_pool: Any) -> None:
    # T004-02 (a)
    pool = make_pool(max_size=1)
    with pool.connection():
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"waiting for a connection \(max_size=1, in use=1\)"):
            pool.acquire(timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
    assert isinstance(PoolTimeout("x"), psycopg.OperationalError)


def test_deadline_with_a_server_that_never_answers(twin: str, caplog: Any) -> None:
    # T004-02 (b): a listener that accepts and never answers; the acquire deadline wins
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    try:
        pool = fastpool.Pool(f"host=127.0.0.1 port={port} dbname=x user=x", open=False, acquire_timeout=5)
        try:
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout, match=f"connecting to 127.0.0.1:{port}"):
                pool.acquire(timeout=0.5)
            assert time.monotonic() - t0 < 1.5, "bounded by the acquire deadline, not connect_timeout"
            check_invariants(pool)
        finally:
            pool.close(timeout=0)
    finally:
        srv.close()


def test_terminated_idle_backend_is_never_handed_out(make_pool: Any, admin: Any) -> None:
    # T004-03 / T002-01: with and without test_before_acquire
    for tba in (True, False):
        pool = make_pool(max_size=2, test_before_acquire=tba)
        with pool.connection() as conn:
            pid = pid_of(conn)
        terminate(admin, pid)
        with pool.connection() as conn:
            new = pid_of(conn)  # no error reaches the user
        assert new != pid
        check_invariants(pool)


def test_verify_after_gates_the_round_trip(make_pool: Any) -> None:
    pool = make_pool(max_size=1, verify_after=0.2)
    with pool.connection():
        pass
    with pool.connection():
        pass
    assert pool.stats()["health_checks"] == 0, "a hot pool does no I/O per borrow"
    time.sleep(0.25)
    with pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert pool.stats()["health_checks"] == 1


def test_hooks_on_real_connections(make_pool: Any, admin: Any, app_name: str) -> None:
    # T004-04
    counts = {"before": 0}
    reject = {"pid": None}

    def before_acquire(conn: Any, meta: ConnectionMetadata) -> bool:
        counts["before"] += 1
        return pid_of(conn) != reject["pid"]

    pool = make_pool(max_size=2, open=False, before_acquire=before_acquire)
    with pool.connection() as conn:
        pid = pid_of(conn)
    assert counts["before"] == 0, "before_acquire is not called for new connections"
    reject["pid"] = pid
    with pool.connection() as conn:
        assert pid_of(conn) != pid
    assert wait_until(lambda: pid not in backends(admin, app_name))

    def after_release(conn: Any, meta: ConnectionMetadata) -> bool:
        assert meta.idle_for == 0.0
        raise RuntimeError("after_release exploded")

    pool2 = make_pool(max_size=1, after_release=after_release)
    with pool2.connection() as conn:
        pid2 = pid_of(conn)
    assert wait_until(lambda: pid2 not in backends(admin, app_name))
    check_invariants(pool2)


def test_after_connect_runs_once_per_connection(make_pool: Any) -> None:
    # T004-05
    calls = []
    pool = make_pool(
        min_size=3, max_size=4, after_connect=lambda c, m: calls.append(c.execute("SELECT 1").fetchone())
    )
    assert len(calls) == 3 and pool.stats()["connects"] == 3
    fails = [psycopg.OperationalError("transient"), psycopg.OperationalError("transient")]

    def flaky(conn: Any, meta: ConnectionMetadata) -> None:
        if fails:
            raise fails.pop(0)
        conn.execute("SET application_name = 'flaky-ok'")

    pool2 = make_pool(max_size=1, open=False, after_connect=flaky)
    with pool2.connection(timeout=5) as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("flaky-ok",)

    def bug(conn: Any, meta: ConnectionMetadata) -> None:
        raise ValueError("bug in after_connect")

    pool3 = make_pool(max_size=1, open=False, after_connect=bug)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bug in after_connect"):
        pool3.acquire(timeout=10)
    assert time.monotonic() - t0 < 5


def test_max_lifetime(make_pool: Any, admin: Any, app_name: str) -> None:
    # T004-06
    pool = make_pool(max_size=2, max_lifetime=1.0, idle_timeout=None)
    with pool.connection() as conn:
        pid1 = pid_of(conn)
    time.sleep(1.1)
    with pool.connection() as conn:
        assert pid_of(conn) != pid1, "an expired idle connection is replaced at acquire"
    pc = pool.acquire()
    pid3 = pid_of(pc.connection)
    time.sleep(1.1)
    assert pid_of(pc.connection) == pid3  # a checked-out connection keeps working
    pc.release()
    assert wait_until(lambda: pid3 not in backends(admin, app_name)), "closed on return"


def test_idle_timeout_keeps_min_size(make_pool: Any, admin: Any, app_name: str) -> None:
    # T004-07
    pool = make_pool(min_size=2, max_size=5, idle_timeout=1.0)
    held = [pool.acquire() for _ in range(5)]
    for h in held:
        h.release()
    assert wait_until(lambda: pool.stats()["size"] == 2, timeout=4)
    assert wait_until(lambda: len(backends(admin, app_name)) == 2)
    survivors = backends(admin, app_name)
    time.sleep(1.6)  # three reaper periods
    assert backends(admin, app_name) == survivors


def test_top_up_after_every_backend_is_terminated(make_pool: Any, admin: Any, app_name: str) -> None:
    # T004-08: the reaper's probe finds dead idle connections and the floor is restored
    pool = make_pool(min_size=2, max_size=4, idle_timeout=1.0)
    old = backends(admin, app_name)
    assert len(old) == 2
    for pid in old:
        terminate(admin, pid)
    assert wait_until(lambda: len(backends(admin, app_name) - old) == 2, timeout=3)
    s = check_invariants(pool)
    assert s["size"] == 2


def test_unreachable_eager_open_names_host_never_password(twin: str, caplog: Any) -> None:
    # T004-09
    caplog.set_level(logging.DEBUG, logger="fastpool")
    dsn = "host=127.0.0.1 port=1 dbname=test user=postgres password=s3cret"
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout) as ei:
        fastpool.Pool(dsn, acquire_timeout=1.0)
    assert time.monotonic() - t0 < 3
    msg = str(ei.value)
    assert "127.0.0.1:1" in msg and "refused" in msg.lower()
    lazy = fastpool.Pool(dsn, open=False, acquire_timeout=1.0)
    try:
        with pytest.raises(PoolTimeout) as ei2:
            lazy.acquire(timeout=0.5)
        for text in (msg, str(ei2.value), repr(lazy), caplog.text, str(ei.value.__cause__)):
            assert "s3cret" not in text
    finally:
        lazy.close()
    assert "127.0.0.1:1" in caplog.text


def test_bad_database_fails_fast_with_the_server_error(twin: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        fastpool.Pool("host=127.0.0.1 dbname=fastpool_no_such_db user=postgres", acquire_timeout=10)
    assert time.monotonic() - t0 < 5


def test_close(make_pool: Any, admin: Any, app_name: str) -> None:
    # T004-10
    pool = make_pool(max_size=1)
    pc = pool.acquire()
    pid = pid_of(pc.connection)
    out: list[Any] = []

    def waiter() -> None:
        try:
            pool.acquire(timeout=10)
        except BaseException as exc:
            out.append((exc, time.monotonic()))

    t = threading.Thread(target=waiter)
    t.start()
    assert wait_until(lambda: pool.stats()["waiting"] == 1)
    closer = threading.Thread(target=pool.close, kwargs={"timeout": 3})
    t0 = time.monotonic()
    closer.start()
    t.join(5)
    assert isinstance(out[0][0], PoolClosed) and out[0][1] - t0 < 0.5
    pc.release()
    closer.join(5)
    assert wait_until(lambda: pid not in backends(admin, app_name))
    with pytest.raises(PoolClosed):
        pool.acquire()
    pool.close()
    assert backends(admin, app_name) == set()


def test_open_transaction_is_rolled_back_on_return(make_pool: Any, table: str) -> None:
    # T002-07 (INTRANS)
    pool = make_pool(max_size=1)
    with pool.acquire() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    with pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_connection_commits_on_success_and_rolls_back_on_error(make_pool: Any, table: str) -> None:
    pool = make_pool(max_size=1)
    with pool.connection() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(ZeroDivisionError), pool.connection() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (2)")
        1 / 0  # noqa: B018
    with pool.connection() as conn:
        assert conn.execute(f"SELECT array_agg(id) FROM {table}").fetchone() == ([1],)
    with pytest.raises(psycopg.errors.DivisionByZero), pool.connection() as conn:
        conn.execute("SELECT 1/0")  # INERROR at exit: rolled back, connection kept
    with pool.connection() as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert pool.stats()["discarded"] == 0


def test_active_connection_is_discarded(make_pool: Any, admin: Any, app_name: str) -> None:
    # T002-07 (ACTIVE): an unfinished stream leaves the connection mid-protocol (R1)
    pool = make_pool(max_size=1)
    pc = pool.acquire()
    conn = pc.connection
    pid = pid_of(conn)
    rows = conn.cursor().stream("SELECT generate_series(1, 100000)")
    assert next(rows) == (1,)  # read one row and stop
    assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
    pc.release()
    assert wait_until(lambda: pid not in backends(admin, app_name))
    with pool.connection() as conn2:
        assert pid_of(conn2) != pid
    check_invariants(pool)


def test_backend_killed_while_borrowed(make_pool: Any, admin: Any) -> None:
    pool = make_pool(max_size=1)
    with pytest.raises(psycopg.OperationalError), pool.connection() as conn:
        terminate(admin, pid_of(conn))
        conn.execute("SELECT 1")
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    s = check_invariants(pool)
    assert s["discarded"] >= 1 and s["size"] == 1


def test_pool_options_connect(twin: str, dsn: str, app_name: str, admin: Any) -> None:
    opts = fastpool.PoolOptions(max_connections=3, min_connections=2, acquire_timeout=5)
    pool = opts.connect(dsn, kwargs={"application_name": app_name})
    try:
        assert len(backends(admin, app_name)) == 2
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()
    lazy = fastpool.Pool.connect_lazy(dsn, max_size=2, kwargs={"application_name": app_name})
    try:
        assert lazy.stats()["size"] == 0
        with lazy.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        lazy.close()


def test_transaction_helper(make_pool: Any, table: str) -> None:
    pool = make_pool(max_size=1)
    with pool.transaction() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (7)")
    with pool.connection() as conn:
        assert conn.execute(f"SELECT id FROM {table}").fetchall() == [(7,)]


def test_server_restart(twin: str, own_cluster: Any) -> None:
    # T004-12: after a restart no borrower is handed a dead connection, and size recovers
    pool = fastpool.Pool(own_cluster.dsn, min_size=2, max_size=4, acquire_timeout=15, idle_timeout=1.0)
    try:
        held = [pool.acquire() for _ in range(4)]
        old = {pid_of(h.connection) for h in held}
        for h in held:
            h.release()
        own_cluster.restart()
        for _ in range(20):
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
                assert pid_of(conn) not in old
        assert wait_until(lambda: pool.stats()["idle"] >= 2, timeout=5)
        s = check_invariants(pool)
        assert s["discarded"] >= 1
    finally:
        pool.close()
