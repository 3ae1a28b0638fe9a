"""Leadership on advisory locks against the real server (SPEC T000), both twins."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Any

import psycopg
import pytest

import fastpool
import fastpool._advisory
from fastpool import Leadership, LeadershipLost, LeadershipNotAcquired, PoolTimeout, advisory_key

from .conftest import backends, check_invariants, wait_until

pytestmark = pytest.mark.db

KEY = -(1 << 62) - 12345  # negative int64: sign handling


def advisory_locks(admin: Any, pid: int | None = None) -> list[tuple[int, int, int, int]]:
    sql = (
        "SELECT pid, classid::bigint, objid::bigint, objsubid FROM pg_locks"
        " WHERE locktype = 'advisory' AND granted"
    )
    rows = admin.execute(sql).fetchall()
    return [r for r in rows if pid is None or r[0] == pid]


def test_acquire_shows_the_lock_with_the_right_split(make_pool: Any, admin: Any) -> None:
    # T000-01
    pool = make_pool(max_size=2)
    with pool.leadership(KEY) as lead:
        assert isinstance(lead, Leadership)
        locks = advisory_locks(admin, lead.backend_pid)
        assert locks == [(lead.backend_pid, (KEY >> 32) & 0xFFFFFFFF, KEY & 0xFFFFFFFF, 1)]
        assert lead.is_held()
    assert advisory_locks(admin, lead.backend_pid) == []


def test_second_guard_is_refused(make_pool: Any, admin: Any, dsn: str) -> None:
    # T000-02: same pool (no round trip), another pool, another process
    pool = make_pool(max_size=2)
    other = make_pool(max_size=1)
    with pool.leadership("orders") as lead:
        before = pool.stats()["requests"]
        with pytest.raises(LeadershipNotAcquired):
            pool.leadership("orders").acquire()
        assert pool.stats()["requests"] == before, "the in-process short-cut makes no round trip"
        assert other.try_leadership("orders") is None
        with other.connection() as conn:  # the losing connection went back and holds nothing
            assert conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND pid=pg_backend_pid()"
            ).fetchone() == (0,)
        code = textwrap.dedent(f"""
            import fastpool, sys
            pool = fastpool.Pool({dsn!r}, max_size=1)
            try:
                with pool.leadership("orders"):
                    sys.exit(3)
            except fastpool.LeadershipNotAcquired:
                sys.exit(7)
        """)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPOOL_")}
        rc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=False).returncode
        assert rc == 7
        assert lead.is_held()


def test_release_paths(make_pool: Any, admin: Any) -> None:
    # T000-03: clean exit, exception in the body, release twice; the pid comes back clean
    pool = make_pool(max_size=1)
    with pool.leadership(KEY) as lead:
        pid = lead.backend_pid
    with pytest.raises(ZeroDivisionError), pool.leadership(KEY) as lead2:
        1 / 0  # noqa: B018
    lead2.release()
    lead2.release()
    assert advisory_locks(admin) == [] or all(r[0] != pid for r in advisory_locks(admin))
    with pool.connection() as conn:
        assert conn.info.backend_pid == pid
        assert conn.autocommit is False, "the guard's autocommit was not left behind"
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND pid=pg_backend_pid()"
        ).fetchone() == (0,)


def test_unlock_returning_false_discards_the_connection(make_pool: Any, admin: Any, app_name: str) -> None:
    # T000-04
    pool = make_pool(max_size=2)
    with pool.leadership(KEY) as lead:
        pid = lead.backend_pid
        with lead.connection() as conn:
            conn.execute("SELECT pg_advisory_unlock_all()")
    assert lead.lost.is_set()
    assert wait_until(lambda: pid not in backends(admin, app_name))
    assert check_invariants(pool)["size"] == 0


def test_terminated_backend_is_noticed(make_pool: Any, admin: Any) -> None:
    # T000-05: check() and the heartbeat notice, another session can lead, release does not raise
    pool = make_pool(max_size=2)
    lost_calls: list[BaseException] = []
    lead = pool.leadership(KEY, heartbeat=0.2, on_lost=lambda g, e: lost_calls.append(e)).acquire()
    admin.execute("SELECT pg_terminate_backend(%s)", (lead.backend_pid,))
    assert lead.lost.wait(1.5), "the heartbeat noticed within a second or so"
    assert len(lost_calls) == 1 and isinstance(lost_calls[0], LeadershipLost)
    with pytest.raises(LeadershipLost):
        lead.check()
    other = fastpool.Pool(admin.info.dsn, max_size=1)
    try:
        assert other.try_leadership(KEY) is not None
    finally:
        other.close()
    lead.release()
    s = check_invariants(pool)
    assert s["in_use"] == 0


def test_interrupted_try_lock_closes_the_connection(make_pool: Any, admin: Any, app_name: str) -> None:
    # T000-06: fault injection right after the try-lock was sent
    pool = make_pool(max_size=1)
    lead = pool.leadership(KEY)

    def boom() -> None:
        raise KeyboardInterrupt

    lead._after_try_lock = boom
    with pytest.raises(KeyboardInterrupt):
        lead.acquire()
    assert wait_until(
        lambda: not advisory_locks(admin) or all(r[2] != KEY & 0xFFFFFFFF for r in advisory_locks(admin))
    )
    assert check_invariants(pool)["size"] == 0
    with pool.leadership(KEY):
        pass


def test_session_stays_idle_not_idle_in_transaction(make_pool: Any, admin: Any) -> None:
    # T000-07
    pool = make_pool(max_size=1, kwargs={"options": "-c idle_in_transaction_session_timeout=500"})
    with pool.leadership(KEY) as lead:
        time.sleep(1.2)
        state = admin.execute(
            "SELECT state FROM pg_stat_activity WHERE pid = %s", (lead.backend_pid,)
        ).fetchone()
        assert state == ("idle",)
        assert lead.is_held()


def test_dropped_guard_is_reclaimed(make_pool: Any, admin: Any) -> None:
    # T000-08
    pool = make_pool(max_size=1)
    lead = pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del lead
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert wait_until(lambda: all(r[0] != pid for r in advisory_locks(admin)))
    assert wait_until(lambda: pool.stats()["size"] == 0)
    with pool.leadership(KEY):
        pass


def test_advisory_key_is_stable_and_matches_sql(admin: Any) -> None:
    # T000-10
    code = "import fastpool; print(fastpool.advisory_key('orders'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "random")
    }
    assert outs == {str(advisory_key("orders"))}
    sql = "SELECT ('x' || substr(encode(sha256(convert_to(%s, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint"
    for name in ("orders", "ünïcode", "a" * 100):
        assert admin.execute(sql, (name,)).fetchone() == (advisory_key(name),)
    with pytest.raises(ValueError, match="key"):
        advisory_key("")
    with pytest.raises(ValueError, match="key"):
        fastpool._advisory.normalize_key(1 << 63)
    with pytest.raises(ValueError, match="key"):
        fastpool._advisory.normalize_key((1, 1 << 31))
    with pytest.raises(TypeError, match="key"):
        fastpool._advisory.normalize_key(1.5)


def test_key_spaces_and_databases(make_pool: Any, dsn: str) -> None:
    pool = make_pool(max_size=4)
    with pool.leadership((1, 2)), pool.leadership((1 << 32) | 2):
        pass  # the pair and the bigint are different locks
    other_db = dsn.replace("dbname=test", "dbname=postgres")
    other = fastpool.Pool(other_db, max_size=1)
    try:
        with pool.leadership("per-db"), other.leadership("per-db"):
            pass  # locks are per database
    finally:
        other.close()


def test_stacked_lock_is_still_released(make_pool: Any, dsn: str) -> None:
    # T000-11
    pool = make_pool(max_size=1)
    with pool.leadership(KEY) as lead, lead.connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s::int8)", (KEY,))  # stacked: held twice
    other = fastpool.Pool(dsn, max_size=1)
    try:
        assert other.try_leadership(KEY) is not None
    finally:
        other.close()


def test_max_size_one_and_dedicated(make_pool: Any) -> None:
    # T000-12
    pool = make_pool(max_size=1)
    with pool.leadership(KEY), pytest.raises(PoolTimeout):
        pool.acquire(timeout=0.2)
    with pool.leadership(KEY, dedicated=True) as lead:
        assert pool.stats()["dedicated"] == 1
        with pool.connection(timeout=2) as conn:
            assert conn.info.backend_pid != lead.backend_pid
        assert check_invariants(pool)["size"] <= 1
    assert pool.stats()["dedicated"] == 0


def test_close_with_a_live_guard(make_pool: Any, admin: Any) -> None:
    # T000-13
    pool = make_pool(max_size=2)
    lead = pool.leadership(KEY).acquire()
    pid = lead.backend_pid
    pool.close(timeout=0.5)
    assert lead.lost.is_set()
    assert wait_until(lambda: all(r[0] != pid for r in advisory_locks(admin)))
    lead.release()  # no-op, never raises


def test_taint_barrier_through_the_internal_return_path(make_pool: Any, admin: Any, app_name: str) -> None:
    # T000-09
    pool = make_pool(max_size=1)
    lead = pool.leadership(KEY).acquire()
    e = lead._entry
    pid = lead.backend_pid
    pool._release(e)  # a bug returning the lock's connection: the core closes it instead
    assert wait_until(lambda: pid not in backends(admin, app_name))
    lead._entry = None
    lead._state = 2
    with pool.connection() as conn:
        assert conn.info.backend_pid != pid


def test_threads_racing_for_one_key(make_pool: Any) -> None:
    pool = make_pool(max_size=8)
    leaders: list[int] = []
    lock = threading.Lock()

    def contend() -> None:
        for _ in range(20):
            lead = pool.try_leadership("race")
            if lead is None:
                continue
            with lock:
                leaders.append(1)
                assert len(leaders) == 1, "two leaders at once"
            with lock:
                leaders.pop()
            lead.release()

    ts = [threading.Thread(target=contend) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert check_invariants(pool)["in_use"] == 0


def test_psycopg_not_needed_for_resource_pools() -> None:
    assert issubclass(LeadershipNotAcquired, fastpool.Error) and issubclass(LeadershipLost, fastpool.Error)
    assert not issubclass(LeadershipNotAcquired, psycopg.Error)
