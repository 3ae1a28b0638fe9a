"""Ownership over the threaded pool against the real server (SPEC §2.7, T001), both twins."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import fastpool
from fastpool import Mode, OwnershipError, OwnershipRevoked, PoolTimeout, Status
from fastpool.ownership import Ownership

from .conftest import backends, check_invariants, wait_until

pytestmark = pytest.mark.db


def pid_of(own: Any, **kw: Any) -> int:
    with own.connection(**kw) as conn:
        return int(conn.info.backend_pid)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in a new plain thread (no context carried over); return or raise its result."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, fn(*args)))
        except BaseException as exc:
            out.append((False, exc))

    t = threading.Thread(target=run, name="plain-worker")
    t.start()
    t.join(30)
    ok, value = out[0]
    if not ok:
        raise value
    return value


def test_manual_without_checkout_names_identity_and_mode(make_pool: Any) -> None:
    # T001-01
    own = Ownership(make_pool(max_size=2), mode=Mode.MANUAL, label="appdb")
    with pytest.raises(OwnershipError) as ei, own.connection():
        pass
    msg = str(ei.value)
    assert threading.current_thread().name in msg and "MANUAL" in msg and "appdb" in msg
    assert "checkout()" in msg and "allow(" in msg and "shared" in msg  # the remedies are listed
    assert not isinstance(ei.value, OwnershipRevoked)


def test_checkout_checkin_statuses(make_pool: Any) -> None:
    # T001-02
    pool = make_pool(max_size=3)
    own = Ownership(pool, mode=Mode.MANUAL)
    me = threading.current_thread()
    assert own.checkout() is Status.OK
    assert own.checkout() is Status.ALREADY_OWNER
    assert pool.stats()["in_use"] == 1
    stranger = threading.Thread(target=lambda: None, name="stranger")
    helper = threading.Thread(target=lambda: None, name="helper")
    assert own.allow(me, helper) is Status.OK
    assert own.checkout(caller=helper) is Status.ALREADY_ALLOWED
    assert own.checkin(caller=helper) is Status.NOT_OWNER
    assert own.checkin(caller=stranger) is Status.NOT_FOUND
    assert pid_of(own, caller=helper) == pid_of(own)
    assert own.checkin() is Status.OK
    with pytest.raises(OwnershipError):
        pid_of(own, caller=helper)  # the allowance went with the owner
    assert own.checkin() is Status.NOT_FOUND
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] >= 1


def test_callers_chain_tasks_to_thread_and_plain_threads(make_pool: Any) -> None:
    # T001-05, with a threaded pool used from asyncio tasks (owners are tasks)
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)

    async def main() -> None:
        assert own.checkout() is Status.OK
        mine = pid_of(own)
        child = asyncio.create_task(_child(own))
        assert await child == mine  # created after the checkout: finds the owner via the chain
        assert await asyncio.to_thread(pid_of, own) == mine
        with pytest.raises(OwnershipError):
            await asyncio.to_thread(in_thread, pid_of, own)  # a plain Thread carries no context
        assert await asyncio.to_thread(in_thread, own.propagate(pid_of), own) == mine
        assert own.checkin() is Status.OK

    asyncio.run(main())


async def _child(own: Any) -> int:
    return pid_of(own)


def test_early_child_does_not_see_a_later_checkout_but_lookup_is_dynamic(make_pool: Any) -> None:
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)

    async def main() -> None:
        assert own.checkout() is Status.OK  # writes the chain; children created later see it
        mine = pid_of(own)
        own.checkin()
        late = asyncio.create_task(_child(own))
        with pytest.raises(OwnershipError):
            await late  # the owner checked in: nothing to find
        assert own.checkout() is Status.OK  # a new checkout by the same ancestor is found
        assert await asyncio.create_task(_child(own)) != 0
        assert mine
        own.checkin()

    asyncio.run(main())


def test_set_mode_revokes_every_owner(make_pool: Any, admin: Any) -> None:
    # T001-08
    pool = make_pool(max_size=4)
    own = Ownership(pool, mode=Mode.MANUAL)
    admin.execute("CREATE TABLE IF NOT EXISTS own_t8 (v text)")
    barrier = threading.Barrier(3)
    done = threading.Event()

    def owner(tag: str) -> None:
        own.checkout()
        with own.connection() as conn:
            conn.execute("INSERT INTO own_t8 VALUES (%s)", (tag,))  # uncommitted
        barrier.wait()
        done.wait(10)
        with pytest.raises(OwnershipError):
            pid_of(own)

    threads = [threading.Thread(target=owner, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    barrier.wait()
    assert own.stats()["owners"] == 2
    assert own.set_mode(Mode.MANUAL) is Status.OK  # same mode: no-op
    assert own.stats()["owners"] == 2
    assert own.set_mode(Mode.AUTO) is Status.OK
    assert own.stats()["owners"] == 0
    assert own.set_mode(Mode.MANUAL) is Status.OK
    done.set()
    for t in threads:
        t.join(10)
    assert admin.execute("SELECT count(*) FROM own_t8").fetchone()[0] == 0  # both rolled back
    s = check_invariants(pool)
    assert s["in_use"] == 0


def test_shared_mode(make_pool: Any) -> None:
    # T001-09
    pool = make_pool(max_size=4)
    own = Ownership(pool, mode=Mode.MANUAL)
    me = threading.current_thread()
    assert own.set_mode(Mode.shared(me)) is Status.NOT_FOUND
    other_ready, release_other = threading.Event(), threading.Event()
    other_pid: list[int] = []

    def other_owner() -> None:
        own.checkout()
        other_pid.append(pid_of(own))
        other_ready.set()
        release_other.wait(10)
        other_pid.append(pid_of(own))  # revoked by the switch: now it shares the owner's

    t = threading.Thread(target=other_owner)
    t.start()
    assert other_ready.wait(10)
    own.checkout()
    helper = threading.Thread(target=lambda: None)
    own.allow(me, helper)
    assert own.set_mode(Mode.shared(helper)) is Status.NOT_OWNER
    assert own.set_mode(Mode.shared(me)) is Status.OK
    assert own.set_mode(Mode.shared(me)) is Status.OK
    release_other.set()
    t.join(10)
    mine = pid_of(own)
    assert other_pid == [other_pid[0], mine] and other_pid[0] != mine
    assert in_thread(pid_of, own) == mine  # a stranger shares the owner's connection
    # a second live owner cannot take over shared mode
    second = OwnerHandleStarter(own)
    assert own.set_mode(Mode.shared(second.handle)) is Status.ALREADY_SHARED
    second.handle.stop()
    # the shared owner ends: the mode becomes MANUAL
    assert own.checkin() is Status.OK
    assert own.mode == Mode.MANUAL
    with pytest.raises(OwnershipError):
        in_thread(pid_of, own)
    own.checkout()
    assert own.set_mode(Mode.shared(me)) is Status.OK
    assert in_thread(pid_of, own) == pid_of(own)
    own.checkin()
    check_invariants(pool)


class OwnerHandleStarter:
    def __init__(self, own: Any) -> None:
        self.handle = own.start_owner(allow_current=False)


def test_ownership_timeout_closes_and_warns(make_pool: Any, admin: Any, app_name: str, caplog: Any) -> None:
    # T001-10
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = make_pool(max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL, ownership_timeout=0.5)
    own.checkout()
    pid = pid_of(own)
    time.sleep(0.8)
    assert wait_until(lambda: pid not in backends(admin, app_name), 5)
    with pytest.raises(OwnershipError):
        pid_of(own)
    assert any("timed out" in r.getMessage() for r in caplog.records)
    assert wait_until(lambda: check_invariants(pool)["in_use"] == 0)


def test_unallow_existing_moves_a_worker(make_pool: Any) -> None:
    # T001-11
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)
    a = own.start_owner(allow_current=False, name="A")
    b = own.start_owner(allow_current=False, name="B")
    worker = threading.Thread(target=lambda: None, name="worker")
    assert own.allow(a, worker) is Status.OK
    assert own.allow(b, worker) is Status.ALREADY_ALLOWED
    assert own.allow(b, worker, unallow_existing=True) is Status.OK
    b_pid = pid_of(own, caller=b)
    a.stop()
    assert pid_of(own, caller=worker) == b_pid
    # a target that owns a connection is checked in first
    c = own.start_owner(allow_current=False, name="C")
    assert own.allow(b, c, unallow_existing=True) is Status.OK
    assert pid_of(own, caller=c) == b_pid
    b.stop()
    with pytest.raises(OwnershipError):
        pid_of(own, caller=worker)


def test_hooks_post_checkout_and_pre_checkin(make_pool: Any) -> None:
    # T001-12
    pool = make_pool(max_size=2)

    def bad_post(conn: Any) -> None:
        raise RuntimeError("post_checkout says no")

    own = Ownership(pool, mode=Mode.MANUAL, post_checkout=bad_post)
    before = pool.stats()["size"]
    with pytest.raises(RuntimeError, match="post_checkout says no"):
        own.checkout()
    assert wait_until(lambda: pool.stats()["in_use"] == 0)
    assert pool.stats()["size"] <= max(before, 1)
    reasons: list[Any] = []

    def pre(reason: Any, conn: Any) -> None:
        reasons.append(reason)
        raise RuntimeError("pre_checkin says no")

    own2 = Ownership(pool, mode=Mode.MANUAL, pre_checkin=pre)
    own2.checkout()
    pid = pid_of(own2)
    discarded = pool.stats().get("discarded", None)
    with pytest.raises(RuntimeError, match="pre_checkin says no"):
        own2.checkin()
    assert reasons == ["checkin"]
    with pool.connection() as conn:  # the connection was discarded, not returned
        assert conn.info.backend_pid != pid
    if discarded is not None:
        assert pool.stats()["discarded"] > discarded
    check_invariants(pool)


def test_exclusive_borrow_and_nesting(make_pool: Any) -> None:
    # T001-13 (threads)
    own = Ownership(make_pool(max_size=2), mode=Mode.MANUAL)
    me = threading.current_thread()
    own.checkout()
    helper_result: list[Any] = []

    def helper() -> None:
        try:
            with own.connection(caller=me, timeout=0.3):
                helper_result.append("got it")
        except PoolTimeout as exc:
            helper_result.append(exc)

    with own.connection() as c1:
        with own.connection() as c2:
            assert c1 is c2  # nesting in the same identity: same object, no deadlock
        t = threading.Thread(target=helper)
        t.start()
        t.join(5)
    assert isinstance(helper_result[0], PoolTimeout)
    t = threading.Thread(target=helper)
    t.start()
    t.join(5)
    assert helper_result[1] == "got it"
    own.checkin()


def test_allow_scope_in_a_thread_pool(make_pool: Any) -> None:
    # T001-14
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)
    owner = own.start_owner(allow_current=False)
    mine = pid_of(own, caller=owner)

    def request() -> int:
        with own.allow_scope(owner) as st:
            assert st is Status.OK
            return pid_of(own)

    with ThreadPoolExecutor(max_workers=1) as ex:
        assert ex.submit(request).result() == mine
        with pytest.raises(OwnershipError):
            ex.submit(pid_of, own).result()  # the same reused thread, after its scope
    owner.stop()


def test_owner_thread_ends_idle_connection_checked_in(make_pool: Any) -> None:
    # T001-06 (thread owner)
    pool = make_pool(max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def owner() -> None:
        own.checkout()
        holder["pid"] = pid_of(own)
        own.allow(threading.current_thread(), holder["helper"])
        started.set()

    holder["helper"] = threading.Thread(target=lambda: None)
    t = threading.Thread(target=owner)
    t.start()
    assert started.wait(10)
    t.join(10)
    assert wait_until(lambda: own.stats()["owners"] == 0, 5)
    with pytest.raises(OwnershipError):
        pid_of(own, caller=holder["helper"])
    assert wait_until(lambda: pool.stats()["in_use"] == 0)
    with pool.connection() as conn:
        assert conn.info.backend_pid == holder["pid"]  # checked in, not closed


def test_owner_ends_while_borrower_queries(make_pool: Any, admin: Any, app_name: str) -> None:
    # T001-07 (threads): the query is cancelled, the borrower gets OwnershipRevoked, the pid goes
    pool = make_pool(max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL)
    handle = own.start_owner(allow_current=False)
    pid = pid_of(own, caller=handle)
    errors: list[BaseException] = []
    entered = threading.Event()

    def borrower() -> None:
        try:
            with own.allow_scope(handle), own.connection() as conn:
                entered.set()
                conn.execute("SELECT pg_sleep(10)")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=borrower)
    t.start()
    assert entered.wait(10)
    time.sleep(0.2)
    t0 = time.monotonic()
    handle.stop()
    t.join(5)
    assert time.monotonic() - t0 < 1.5
    assert isinstance(errors[0], OwnershipRevoked)
    assert "checked in" in str(errors[0])
    assert isinstance(errors[0].__cause__, psycopg.errors.QueryCanceled)
    assert wait_until(lambda: pid not in backends(admin, app_name), 5)
    s = check_invariants(pool)
    assert s["in_use"] == 0


def test_handle_collected_is_revoked(make_pool: Any) -> None:
    pool = make_pool(max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL)
    h = own.start_owner(allow_current=False)
    assert pool.stats()["in_use"] == 1
    del h
    gc.collect()
    assert wait_until(lambda: pool.stats()["in_use"] == 0, 5)
    assert own.stats()["owners"] == 0


def test_auto_mode_threads_get_their_own(make_pool: Any) -> None:
    pool = make_pool(max_size=3)
    own = Ownership(pool)  # AUTO
    a = pid_of(own)
    assert pid_of(own) == a
    assert in_thread(pid_of, own) != a
    own.checkin()


def test_bad_arguments(make_pool: Any) -> None:
    pool = make_pool(max_size=1)
    with pytest.raises(TypeError, match="mode"):
        Ownership(pool, mode="manual")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ownership_timeout"):
        Ownership(pool, ownership_timeout=-1)
    with pytest.raises(ValueError, match="ownership_log"):
        Ownership(pool, ownership_log="loud")
    with pytest.raises(TypeError, match="pool"):
        Ownership(object())
    own = Ownership(pool)
    with pytest.raises(TypeError, match="target"):
        own.allow(threading.current_thread(), 42)
    with pytest.raises(TypeError, match="caller"):
        own.checkout(caller="me")


def test_pool_close_revokes_owners(twin: str, dsn: str) -> None:
    pool = fastpool.Pool(dsn, max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL)
    own.checkout()
    pool.close(timeout=1)
    with pytest.raises(OwnershipError):
        pid_of(own)
    assert pool.stats()["in_use"] == 0


def test_many_threads_race_on_one_owner(make_pool: Any) -> None:
    pool = make_pool(max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL)
    owner = own.start_owner(allow_current=False)
    inside = [0]
    worst = [0]
    lock = threading.Lock()

    def worker(i: int) -> None:
        for _ in range(30):
            with own.allow_scope(owner), own.connection(timeout=20) as conn:
                with lock:
                    inside[0] += 1
                    worst[0] = max(worst[0], inside[0])
                conn.execute("SELECT 1")
                with lock:
                    inside[0] -= 1

    from .conftest import run_threads

    run_threads(worker, 16)
    assert worst[0] == 1  # never two borrowers at once
    owner.stop()
    s = check_invariants(pool)
    assert s["in_use"] == 0


def test_ownership_log_records_changes(make_pool: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="fastpool")
    own = Ownership(make_pool(max_size=2), mode=Mode.MANUAL, ownership_log="info")
    owner = own.start_owner(name="logged")
    owner.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "owner 'logged' checked out a connection in mode Mode.MANUAL" in text
    assert "was allowed by owner 'logged'" in text
    assert "lost connection" in text and "checked in" in text


def test_backend_killed_under_an_owner(make_pool: Any, admin: Any) -> None:
    pool = make_pool(max_size=2)
    own = Ownership(pool, mode=Mode.MANUAL)
    own.checkout()
    pid = pid_of(own)
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError), own.connection() as conn:
        conn.execute("SELECT 1")
    with pytest.raises(OwnershipError):
        pid_of(own)  # the dead connection was revoked (R1), not handed out again
    assert own.stats()["owners"] == 0
    assert own.checkout() is Status.OK
    assert pid_of(own) != pid
    own.checkin()
    s = check_invariants(pool)
    assert s["in_use"] == 0
