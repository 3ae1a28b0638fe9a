"""The pool core, on both builds (the ``core_mod`` fixture runs each test twice)."""

from __future__ import annotations

import inspect
import math
from types import ModuleType
from typing import Any

import pytest

from .conftest import core_config, load_build, new_core


def connect(core: Any, now: float, conn: Any = None) -> Any:
    """Reserve and complete one connect; return the waiter served (or None)."""
    return core.connect_done(conn if conn is not None else object(), now)


def test_empty_core_asks_for_a_connect(core_mod: ModuleType) -> None:
    core = new_core(core_mod)
    assert core.acquire(0.0) is None
    w = core_mod.Waiter("h")
    assert core.enqueue(w, 0.0) == 1
    assert (core.size, core.connecting, core.waiting) == (1, 1, 1)
    served = connect(core, 0.1, "conn")
    assert served is w
    assert w.state == core_mod.WAITER_SERVED
    e = w.entry
    assert e.conn == "conn" and e.fresh and e.state == core_mod.ENTRY_IN_USE
    assert (core.size, core.in_use, core.waiting, core.connecting) == (1, 1, 0, 0)
    assert core.release(e, 0.2) is None
    assert (core.idle, core.in_use) == (1, 0)
    e2 = core.acquire(0.3)
    assert e2 is e and not e2.fresh


def test_release_hands_off_to_oldest_waiter_fifo(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1)
    w0 = core_mod.Waiter()
    core.enqueue(w0, 0)
    connect(core, 0)
    e = w0.entry
    waiters = [core_mod.Waiter(i) for i in range(5)]
    for w in waiters:
        assert core.enqueue(w, 0) == 0  # pool is full: no connect to start
    order = []
    for _ in range(5):
        w = core.release(e, 1)
        order.append(w.handle)
        assert w.entry is e
    assert order == [0, 1, 2, 3, 4]
    assert core.release(e, 2) is None and core.idle == 1


def test_no_barging_past_a_queued_waiter(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=2)
    w = core_mod.Waiter()
    core.enqueue(w, 0)
    assert core.connecting == 1
    # a newcomer does not take anything while a waiter is queued
    assert core.acquire(0) is None


def test_lifo_and_fifo_order(core_mod: ModuleType) -> None:
    for lifo, expect in ((True, [3, 2, 1]), (False, [1, 2, 3])):
        core = new_core(core_mod, max_size=3, lifo=lifo, min_size=3)
        assert core.plan_connects() == 3
        for i in (1, 2, 3):
            connect(core, float(i), i)
        got = [core.acquire(10.0).conn for _ in range(3)]
        assert got == expect


def test_max_lifetime_expiry_at_pop_with_jitter(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=50, min_size=50, max_lifetime=100.0, seed=7)
    core.plan_connects()
    for i in range(50):
        connect(core, 0.0, i)
    expiries = [e.expires_at for e in core.idle_entries()]
    assert all(95.0 <= x <= 100.0 for x in expiries)
    assert max(expiries) - min(expiries) > 2.0, "lifetimes must be spread over the jitter window"
    assert core.acquire(94.9) is not None
    assert core.acquire(100.0) is None  # everything left has expired
    assert core.n_expired == 49 and len(core.doomed) == 49
    assert core.take_doomed() and core.doomed == []


def test_idle_timeout_at_pop_respects_min_size(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=3, min_size=1, idle_timeout=10.0, lifo=False)
    core.plan_connects()
    connect(core, 0.0, "a")
    w = core_mod.Waiter()
    core.enqueue(w, 0.0)
    connect(core, 0.0, "b")
    core.release(w.entry, 0.0)
    assert core.idle == 2
    # both idle for 20 s: the first one popped expires, the last one is the floor
    e = core.acquire(20.0)
    assert e is not None and e.conn == "b"
    assert core.n_expired == 1


def test_health_check_gate(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=2, min_size=1, verify_after=1.0)
    core.plan_connects()
    connect(core, 0.0)
    e = core.acquire(0.5)
    assert not e.check_due
    core.release(e, 0.5)
    e = core.acquire(1.5)
    assert e.check_due
    core.flag(e)
    core.release(e, 1.5)
    e = core.acquire(1.6)
    assert e.check_due, "a flagged entry needs a check whatever its idle time"


def test_max_waiting_and_closed_codes(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1, max_waiting=2)
    assert core.enqueue(core_mod.Waiter(), 0) == 1
    assert core.enqueue(core_mod.Waiter(), 0) == 0
    assert core.enqueue(core_mod.Waiter(), 0) == core_mod.ENQUEUE_FULL
    assert core.n_too_many == 1
    failed = core.close()
    assert len(failed) == 2 and all(w.state == core_mod.WAITER_FAILED for w in failed)
    assert core.enqueue(core_mod.Waiter(), 0) == core_mod.ENQUEUE_CLOSED
    assert core.acquire(0) is None
    # a connect that finishes after close is doomed, not idled
    assert connect(core, 1.0) is None and core.idle == 0 and len(core.doomed) == 1


def test_cancel_wait_race(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1)
    w = core_mod.Waiter()
    core.enqueue(w, 0)
    connect(core, 0)  # served
    e = core.cancel_wait(w)
    assert e is not None and e.state == core_mod.ENTRY_IN_USE
    assert core.cancel_wait(w) is None  # idempotent
    w2 = core_mod.Waiter()
    core.enqueue(w2, 0)
    assert core.cancel_wait(w2) is None and core.waiting == 0
    # the cancelled waiter is skipped by the next hand-off
    assert core.release(e, 1) is None and core.idle == 1


def test_many_cancelled_waiters_do_not_pile_up(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1)
    w0 = core_mod.Waiter()
    core.enqueue(w0, 0)
    connect(core, 0)
    for _ in range(10_000):
        w = core_mod.Waiter()
        core.enqueue(w, 0)
        core.cancel_wait(w)
    assert core.waiting == 0
    assert core.release(w0.entry, 1) is None
    assert core.n_cancelled == 10_000


def test_discard_and_connect_failed_reserve_for_waiters(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1)
    w = core_mod.Waiter()
    assert core.enqueue(w, 0) == 1
    assert core.connect_failed() == 1  # the waiter still needs one
    connect(core, 0)
    w2 = core_mod.Waiter()
    core.enqueue(w2, 0)
    assert core.discard(w.entry) == 1
    assert core.size == 1 and core.connecting == 1


def test_misuse_raises(core_mod: ModuleType) -> None:
    a, b = new_core(core_mod), new_core(core_mod)
    w = core_mod.Waiter()
    a.enqueue(w, 0)
    connect(a, 0)
    with pytest.raises(RuntimeError, match="not in use in this pool"):
        b.release(w.entry, 0)
    a.release(w.entry, 0)
    with pytest.raises(RuntimeError, match="not in use"):
        a.release(w.entry, 0)  # twice
    with pytest.raises(RuntimeError, match="no connect in progress"):
        a.connect_failed()
    with pytest.raises(ValueError, match="max_size"):  # the core takes only a validated config
        core_config(max_size=0)
    with pytest.raises(ValueError, match="min_size"):
        core_config(max_size=2, min_size=3)


def test_lock_taint_barrier(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1)
    w = core_mod.Waiter()
    core.enqueue(w, 0)
    connect(core, 0)
    e = w.entry
    e.locks_held = 1
    w2 = core_mod.Waiter()
    core.enqueue(w2, 0)
    assert core.release(e, 1) is None, "a lock-holding entry is never handed on"
    assert w2.state == core_mod.WAITER_WAITING
    assert core.doomed == [e] and e.state == core_mod.ENTRY_CLOSED
    assert core.plan_connects() == 1  # the waiter gets a new connection instead


def test_reap(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=4, min_size=2, idle_timeout=5.0, max_lifetime=1000.0, lifo=False)
    assert core.plan_connects() == 2
    ws = [core_mod.Waiter() for _ in range(4)]
    for w in ws:
        core.enqueue(w, 0)
    assert core.connecting == 4
    for i in range(4):
        connect(core, 0, i)
    for w in ws:
        core.release(w.entry, 0)
    assert core.idle == 4
    assert core.reap(3.0) == 0
    assert core.reap(10.0) == 2, "idle_timeout never reaps below min_size"
    assert core.idle == 2 and core.size == 2
    assert core.reap(2000.0) == 2, "max_lifetime reaps below min_size"
    assert core.size == 0 and core.plan_connects() == 2


def test_evict_only_idle(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=3, min_size=3)
    core.plan_connects()
    for i in range(3):
        connect(core, 0, i)
    entries = core.idle_entries()
    taken = core.acquire(1)
    assert core.evict(entries) == 2
    assert taken.state == core_mod.ENTRY_IN_USE and core.idle == 0 and core.n_discarded == 2


def test_resize(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=4, min_size=4)
    core.plan_connects()
    for i in range(4):
        connect(core, 0, i)
    core.resize(2, 1)
    assert core.size == 2 and len(core.doomed) == 2
    core.resize(6, 3)
    assert core.plan_connects() == 1


def test_stats_keys(core_mod: ModuleType) -> None:
    s = new_core(core_mod).stats()
    assert s["max_size"] == 4 and s["size"] == 0
    assert set(s) >= {"idle", "in_use", "connecting", "waiting", "hits", "handoffs", "expired"}


def _instances(mod: ModuleType) -> dict[str, Any]:
    """One instance of each public class of a core build, made alike on both."""
    import weakref

    class Pool:
        pass

    pool = Pool()
    cfg = core_config(max_size=4, min_size=1, max_lifetime=60.0, idle_timeout=30.0, verify_after=5.0,
                      max_waiting=8, max_uses=100)  # fmt: skip
    core = mod.PoolCore(cfg, 7)
    gates = mod.Gates()
    fp = mod.FastPath(weakref.ref(pool), core, mod.Lock(), gates, mod.GET_PLAIN, mod.PUT_PLAIN, True)
    afp = mod.AsyncFastPath(weakref.ref(pool), core, mod.NoLock(), gates, mod.GET_PLAIN, mod.PUT_PLAIN, True)
    return {
        "Entry": mod.Entry("conn", 1.0, 2.0, 3, core),
        "Waiter": mod.Waiter("handle", 9.5),
        "Gates": gates,
        "DeadlineQueue": mod.DeadlineQueue(),
        "PoolCore": core,
        "FastPath": fp,
        "AsyncFastPath": afp,
        "Borrow": fp.connection(1.0),
        "AsyncBorrow": afp.connection(1.0),
        "Lock": mod.Lock(),
        "NoLock": mod.NoLock(),
    }


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, bytes, tuple))


def test_builds_have_the_same_public_surface() -> None:
    """Every public name of the core, on both builds: the same constants, functions and
    classes, and on an instance of each class the same public attributes, values and methods."""
    py = load_build("python")
    c = load_build("c")
    assert sorted(py.__all__) == sorted(c.__all__)
    instances = {"c": _instances(c), "python": _instances(py)}
    classes = {n for n in c.__all__ if isinstance(getattr(c, n), type)}
    assert classes == set(instances["c"]), "each class has an instance here"
    for name in py.__all__:
        a, b = getattr(py, name), getattr(c, name)
        if isinstance(a, (int, float, tuple)):
            assert type(a) is type(b) and a == b, name
            continue
        if not isinstance(b, type):  # a function
            assert callable(b), name
            assert list(inspect.signature(a).parameters) == list(inspect.signature(b).parameters), name
            # (compared cleaned: Python 3.13 strips docstrings' indentation at compile time, Cython not)
            assert inspect.cleandoc(a.__doc__ or "") == inspect.cleandoc(b.__doc__ or ""), name
            continue
        if name != "Lock":  # the pure build's is threading.Lock itself
            assert (a.__doc__ or "").split("\n")[0] == (b.__doc__ or "").split("\n")[0], name
        ia, ib = instances["python"][name], instances["c"][name]
        pub_a = {n for n in dir(ia) if not n.startswith("_")}
        pub_b = {n for n in dir(ib) if not n.startswith("_")}
        if name == "Lock":  # threading.Lock has old aliases too (acquire_lock...)
            pub_a &= pub_b
        assert pub_a == pub_b, (name, pub_a ^ pub_b)
        for attr in sorted(pub_a):
            va, vb = getattr(ia, attr), getattr(ib, attr)
            if callable(va):
                if name != "Lock":
                    assert (va.__doc__ or "").split("\n")[0] == (vb.__doc__ or "").split("\n")[0], (
                        name,
                        attr,
                    )
            elif _plain(va) or (isinstance(va, (list, dict)) and not va):
                assert va == vb and type(va) is type(vb), (name, attr, va, vb)


def test_pure_build_signatures_are_introspectable() -> None:
    py = load_build("python")
    sig = inspect.signature(py.PoolCore)
    assert list(sig.parameters) == ["config", "seed"]
    assert math.isinf(py.INF)


def test_drain(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=3, min_size=2)
    core.plan_connects()
    connect(core, 0.0, "a")
    connect(core, 0.0, "b")
    held = core.acquire(1.0)
    assert core.drain(2.0) == 1 and core.idle == 0
    assert core.release(held, 3.0) is None and len(core.doomed) == 2, (
        "in use before the drain: closed on return"
    )
    assert core.plan_connects() == 2
    w = core_mod.Waiter()
    core.enqueue(w, 3.0)
    connect(core, 3.5, "new")
    assert core.release(w.entry, 4.0) is None and core.idle == 1, "created after the drain: kept"


@pytest.mark.parametrize(
    ("module", "pxd_path", "expected"),
    [
        (
            "fastpool._core_pool",
            "_core_pool.pxd",
            {"Entry", "Waiter", "PoolCore", "Gates", "FastPath", "DeadlineQueue"},
        ),
        ("fastpool._drivers.psycopg_gates", "_drivers/psycopg_gates.pxd", {"ClientState", "PsycopgGates"}),
        ("fastpool._drivers.asyncpg_gates", "_drivers/asyncpg_gates.pxd", {"AsyncpgState", "AsyncpgGates"}),
        ("fastpool._compat.asyncpg_lend", "_compat/asyncpg_lend.pxd", {"AcquireContext", "DropinPath"}),
    ],
)
def test_pure_slots_match_the_pxd(module: str, pxd_path: str, expected: set[str]) -> None:
    """Run as Python, each class's ``__slots__`` list exactly the attributes its ``.pxd``
    declares for the compiled build: an attribute missing from either fails here."""
    import pathlib
    import re

    from fastpool import _core_build

    py = _core_build.load_module(module, "python")
    pxd = (pathlib.Path(__file__).parents[1] / "src" / "fastpool" / pxd_path).read_text()
    classes = re.findall(r"^cdef class (\w+)\b[^\n]*\n((?:    .*\n|\n)*)", pxd, re.M)
    assert {name for name, _ in classes} >= expected
    for name, body in classes:
        declared = re.findall(
            r"^    cdef (?:readonly |public )?(?:[\w.]+ )+?(\w+)(?:\[\d+\])?\s*(?:#.*)?$", body, re.M
        )
        assert sorted(getattr(py, name).__dict__["__slots__"]) == sorted(declared), name
    if module == "fastpool._core_pool":
        for name, obj in _instances(py).items():
            if name in dict(classes):
                assert not hasattr(obj, "__dict__"), f"{name}: a base without __slots__"


def test_deadlines_expire_in_order_from_one_timer(core_mod: ModuleType) -> None:
    """The core keeps its waiters by deadline: ``expire`` times out exactly those due, oldest
    deadline first, and ``next_deadline`` says when to look again (in order or not)."""
    m = core_mod
    core = new_core(m, max_size=1)
    w0 = m.Waiter("a", 1.0)
    assert core.enqueue(w0, 0.0) == 1
    connect(core, 0.0)  # w0 served: the pool is full from now on
    ws = [m.Waiter(i, d) for i, d in enumerate([2.0, 3.0, 3.0, 2.5, 10.0, float("inf")])]
    for w in ws:
        assert core.enqueue(w, 0.5) == 0
    assert core.next_deadline() == 2.0
    assert core.expire(1.9) == []
    assert [w.handle for w in core.expire(2.6)] == [0, 3]  # the in-order one, then the late one
    assert all(w.state == m.WAITER_TIMED_OUT for w in (ws[0], ws[3]))
    assert core.waiting == 4 and core.next_deadline() == 3.0
    assert core.cancel_wait(ws[1]) is None  # withdrawn: skipped
    assert core.next_deadline() == 3.0 and [w.handle for w in core.expire(5.0)] == [2]
    assert core.next_deadline() == 10.0
    assert core.stats()["timed_out_waits"] == 3 and core.stats()["cancelled_waits"] == 1
    assert core.cancel_wait(ws[0], True) is None, "a timed-out waiter has nothing to give back"
    core.release(w0.entry, 6.0)  # the next live waiter (FIFO) is served, not a timed-out one
    assert ws[4].state == m.WAITER_SERVED and core.next_deadline() == float("inf")
    assert core.expire(100.0) == []


def test_a_thread_that_times_itself_out_is_counted_as_a_timeout(core_mod: ModuleType) -> None:
    core = new_core(core_mod, max_size=1)
    first = core_mod.Waiter()
    core.enqueue(first, 0.0)
    connect(core, 0.0)
    w = core_mod.Waiter()  # no deadline: the core never expires it
    core.enqueue(w, 0.0)
    assert core.next_deadline() == float("inf") and core.expire(1e9) == []
    assert core.cancel_wait(w, True) is None
    assert w.state == core_mod.WAITER_TIMED_OUT and core.waiting == 0
    assert core.stats()["timed_out_waits"] == 1 and core.stats()["cancelled_waits"] == 0


def test_deadline_bookkeeping_does_not_grow_with_withdrawn_waiters(core_mod: ModuleType) -> None:
    """Waiters served or withdrawn before their deadline leave the deadline queue as they go:
    50,000 of them leave no more behind than a few live ones would."""
    m = core_mod
    core = new_core(m, max_size=1)
    first = m.Waiter()
    core.enqueue(first, 0.0)
    connect(core, 0.0)
    for i in range(50_000):
        w = m.Waiter(i, 10.0 + i * 1e-6)
        core.enqueue(w, 0.0)
        core.cancel_wait(w)
    late = m.Waiter("late", 5.0)  # out of order: the heap
    core.enqueue(late, 0.0)
    assert core.waiting == 1 and core.next_deadline() == 5.0
    assert [w.handle for w in core.expire(6.0)] == ["late"]
    assert core.close() == [] and core.next_deadline() == float("inf")
