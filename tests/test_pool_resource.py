"""The threaded pool over a plain in-process resource (SPEC T003, T004 shapes), both twins."""

from __future__ import annotations

import gc
import itertools
import random
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import fastpool
from fastpool import ConnectionMetadata, PoolClosed, PoolTimeout, ResourcePool, TooManyRequests

from .conftest import check_invariants, run_threads, wait_until


class Ctx:
    """Shared state the test controls and inspects."""

    def __init__(self) -> None:
        self.serial = itertools.count(1)
        self.created: list[Res] = []
        self.closed: list[Res] = []
        self.create_errors: list[BaseException] = []
        self.needs = False
        self.needs_raises = False
        self.check_fails = False
        self.check_sleep = 0.0
        self.create_sleep = 0.0
        self.checks = 0
        self.lock = threading.Lock()


class Res:
    """A counting resource following the fastpool.Resource protocol."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.id = next(ctx.serial)
        self.closed = False
        self.users = 0

    @classmethod
    def create(cls, ctx: Ctx) -> Res:
        if ctx.create_sleep:
            time.sleep(ctx.create_sleep)
        with ctx.lock:
            if ctx.create_errors:
                raise ctx.create_errors.pop(0)
            r = cls(ctx)
            ctx.created.append(r)
        return r

    def needs_health_check(self, ctx: Ctx, meta: ConnectionMetadata) -> bool:
        if ctx.needs_raises:
            raise RuntimeError("needs_health_check exploded")
        return ctx.needs

    def health_check(self, ctx: Ctx) -> None:
        with ctx.lock:
            ctx.checks += 1
        if ctx.check_sleep:
            time.sleep(ctx.check_sleep)
        if ctx.check_fails:
            raise ConnectionError("unhealthy")

    def close(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True
        with self.ctx.lock:
            self.ctx.closed.append(self)


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()


@pytest.fixture
def make(twin: str, ctx: Ctx) -> Iterator[Any]:
    pools: list[ResourcePool[Res]] = []

    def make(**kw: Any) -> ResourcePool[Res]:
        kw.setdefault("acquire_timeout", 5.0)
        p: ResourcePool[Res] = ResourcePool(Res, ctx, **kw)
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.close(timeout=1.0)


def test_implementation_follows_the_twin(twin: str, make: Any) -> None:
    pool = make(max_size=1)
    assert type(pool._core).__module__ == {"c": "fastpool._core", "python": "fastpool._core_py"}[twin]


def test_borrow_and_return(make: Any, ctx: Ctx) -> None:
    pool = make(max_size=2)
    with pool.connection() as r:
        assert isinstance(r, Res) and not r.closed
    with pool.connection() as r2:
        assert r2 is r, "LIFO: the hot resource is reused"
    s = check_invariants(pool)
    assert s["size"] == 1 and s["idle"] == 1 and s["connects"] == 1


def test_needs_health_check_false_means_no_check(make: Any, ctx: Ctx) -> None:
    # T003-01
    pool = make(max_size=2, verify_after=3600)
    for _ in range(50):
        with pool.connection():
            pass
    assert ctx.checks == 0


def test_failed_health_check_replaces_the_resource(make: Any, ctx: Ctx) -> None:
    # T003-02
    pool = make(max_size=2)
    with pool.connection() as r:
        pass
    ctx.needs, ctx.check_fails = True, True
    with pool.connection() as r2:
        assert r2 is not r
    assert r.closed and ctx.closed == [r], "the old resource is closed before a new one is used"
    # the fresh one was not checked (it is new); both failing: the create error reaches the caller
    ctx.create_errors.append(ValueError("cannot create"))
    with pytest.raises(ValueError, match="cannot create"), pool.connection(timeout=2):
        pass
    assert r2.closed
    s = check_invariants(pool)
    assert s["size"] == 0
    ctx.needs = ctx.check_fails = False
    with pool.connection() as r3:
        assert not r3.closed
    check_invariants(pool)


def test_needs_health_check_raising_counts_as_unhealthy(make: Any, ctx: Ctx) -> None:
    # T003-03
    pool = make(max_size=2)
    with pool.connection() as r:
        pass
    ctx.needs_raises = True
    with pool.connection() as r2:
        assert r2 is not r and r.closed


def test_slow_failing_health_check_is_bounded_by_the_deadline(make: Any, ctx: Ctx) -> None:
    # T003-05, threaded form: a slow failing check, then failing connects: PoolTimeout at the deadline
    pool = make(max_size=1, min_size=1)
    with pool.connection() as r:
        pass
    ctx.needs, ctx.check_fails, ctx.check_sleep = True, True, 0.3
    ctx.create_errors.extend([ConnectionRefusedError("refused")] * 10_000)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="connecting") as ei, pool.connection(timeout=0.5):
        pass
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 3.0
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)
    assert r.closed
    check_invariants(pool)


def test_waiters_are_served_fifo(make: Any, ctx: Ctx) -> None:
    # T003-06: 200 waiters queued in a known order are served in that order.  With
    # max_size=1 the order of service is observable exactly (with 2 connections two
    # served threads may record in either order, which says nothing about the pool).
    pool = make(max_size=1, min_size=1)
    held = [pool.acquire()]
    order: list[int] = []
    lock = threading.Lock()

    def waiter(i: int) -> None:
        with pool.connection(), lock:
            order.append(i)

    threads = []
    for i in range(200):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        assert wait_until(lambda i=i: pool.stats()["waiting"] == i + 1)
    handoffs_before = pool.stats()["handoffs"]
    for h in held:
        h.release()
    for t in threads:
        t.join(10)
    assert order == list(range(200))
    s = check_invariants(pool)
    # every waiter was woken exactly once, by a direct hand-off (no wake-and-recheck)
    assert s["handoffs"] - handoffs_before == 200
    assert s["size"] == 1


def test_racing_threads_keep_every_invariant(make: Any, ctx: Ctx) -> None:
    # 64 threads x borrows on max_size 4
    pool = make(max_size=4)
    base = pool.stats()["requests"]
    in_use: set[int] = set()
    guard = threading.Lock()
    max_seen = [0]

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(300):
            with pool.connection() as r:
                with guard:
                    assert r.id not in in_use, "handed out twice"
                    in_use.add(r.id)
                    max_seen[0] = max(max_seen[0], pool._core.size)
                if rnd.random() < 0.1:
                    time.sleep(0)
                with guard:
                    in_use.discard(r.id)

    run_threads(worker, 64)
    assert max_seen[0] <= 4
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["waiting"] == 0 and s["size"] <= 4
    assert s["requests"] - base == 64 * 300
    # every permit is available again: max_size borrows at once succeed without waiting long
    held = [pool.acquire(timeout=2) for _ in range(4)]
    assert len({h.connection.id for h in held}) == 4
    for h in held:
        h.release()


def test_timeout_names_phase_and_total(make: Any) -> None:
    pool = make(max_size=1)
    held = pool.acquire()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout) as ei:
        pool.acquire(timeout=0.2)
    assert time.monotonic() - t0 >= 0.2
    msg = str(ei.value)
    assert "0.2 s" in msg and "waiting for a connection (max_size=1, in use=1)" in msg
    held.release()
    s = check_invariants(pool)
    assert s["timeouts"] == 1 and s["waiting"] == 0 and s["idle"] == 1


def test_timed_out_caller_abandons_only_its_wait(make: Any, ctx: Ctx) -> None:
    # the connect finishes after the caller gave up: it serves the next one (sqlx#3513)
    ctx.create_sleep = 0.3
    pool = make(max_size=1, open=False)
    with pytest.raises(PoolTimeout, match="connecting"):
        pool.acquire(timeout=0.05)
    assert wait_until(lambda: pool.stats()["idle"] == 1)
    t0 = time.monotonic()
    with pool.connection(timeout=1) as r:
        assert r.id == 1
    assert time.monotonic() - t0 < 0.25
    assert len(ctx.created) == 1


def test_exception_inside_with_returns_the_resource(make: Any) -> None:
    pool = make(max_size=1)
    with pytest.raises(ZeroDivisionError), pool.connection():
        1 / 0  # noqa: B018
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] == 1


def test_max_waiting(make: Any) -> None:
    pool = make(max_size=1, max_waiting=2)
    held = pool.acquire()
    results: list[Any] = []

    def wait() -> None:
        try:
            with pool.connection(timeout=5):
                results.append("ok")
        except BaseException as exc:
            results.append(exc)

    ts = [threading.Thread(target=wait) for _ in range(2)]
    for t in ts:
        t.start()
    assert wait_until(lambda: pool.stats()["waiting"] == 2)
    with pytest.raises(TooManyRequests, match="max_waiting"):
        pool.acquire(timeout=5)
    held.release()
    for t in ts:
        t.join(5)
    assert results == ["ok", "ok"]
    assert pool.stats()["too_many_requests"] == 1


def test_close_wakes_waiters_and_closes_returns(make: Any, ctx: Ctx) -> None:
    # T004-10 on a plain resource
    pool = make(max_size=1)
    held = pool.acquire()
    got: list[Any] = []

    def wait() -> None:
        t0 = time.monotonic()
        try:
            pool.acquire(timeout=5)
        except BaseException as exc:
            got.append((exc, time.monotonic() - t0))

    t = threading.Thread(target=wait)
    t.start()
    assert wait_until(lambda: pool.stats()["waiting"] == 1)
    closer = threading.Thread(target=pool.close, kwargs={"timeout": 2})
    t0 = time.monotonic()
    closer.start()
    t.join(5)
    assert isinstance(got[0][0], PoolClosed)
    assert time.monotonic() - t0 < 1.0
    r = held.connection
    held.release()
    closer.join(5)
    assert r.closed, "a connection returned after close is closed"
    with pytest.raises(PoolClosed):
        pool.acquire()
    pool.close()  # no-op
    assert all(x.closed for x in ctx.created)


def test_pooled_connection_api(make: Any, ctx: Ctx) -> None:
    pool = make(max_size=2)
    pc = pool.acquire()
    assert pc.meta.age >= 0 and pc.meta.idle_for == 0
    pc.release()
    with pytest.raises(fastpool.WrongPoolError):
        pc.release()
    pc = pool.acquire()
    r = pc.connection
    pc.close()
    assert r.closed and pool.stats()["size"] == 0
    pc = pool.acquire()
    r = pc.detach()
    assert not r.closed and pool.stats()["size"] == 0
    r.close()
    tp = pool.try_acquire()
    assert tp is None
    with pool.connection():
        pass
    tp = pool.try_acquire()
    assert tp is not None
    tp.release()


def test_getconn_putconn_and_wrong_pool(make: Any) -> None:
    a, b = make(max_size=1), make(max_size=1)
    r = a.getconn()
    with pytest.raises(fastpool.WrongPoolError):
        b.putconn(r)
    a.putconn(r)
    with pytest.raises(fastpool.WrongPoolError):
        a.putconn(r)
    check_invariants(a)


def test_unreleased_pooled_connection_is_reclaimed(make: Any, ctx: Ctx) -> None:
    pool = make(max_size=1)
    pc = pool.acquire()
    r = pc.connection
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del pc
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert wait_until(lambda: r.closed)
    assert wait_until(lambda: pool.stats()["size"] == 0)
    with pool.connection(timeout=2):
        pass


def test_hooks(make: Any, ctx: Ctx) -> None:
    # T004-04 / T004-05 on a plain resource
    calls: dict[str, list[Any]] = {"after_connect": [], "before_acquire": [], "after_release": []}
    verdict = {"before": True, "after": True}

    def after_connect(r: Res, meta: ConnectionMetadata) -> None:
        calls["after_connect"].append((r.id, meta))

    def before_acquire(r: Res, meta: ConnectionMetadata) -> bool:
        calls["before_acquire"].append((r.id, meta))
        return verdict["before"]

    def after_release(r: Res, meta: ConnectionMetadata) -> bool:
        calls["after_release"].append((r.id, meta))
        return verdict["after"]

    pool = make(
        max_size=2,
        open=False,
        after_connect=after_connect,
        before_acquire=before_acquire,
        after_release=after_release,
    )
    with pool.connection() as r1:
        pass
    assert calls["after_connect"] == [(r1.id, ConnectionMetadata(0.0, 0.0))]
    assert calls["before_acquire"] == [], "never called for a new connection"
    assert calls["after_release"][0][1].idle_for == 0.0
    time.sleep(0.2)
    with pool.connection() as again:
        assert again is r1
    meta = calls["before_acquire"][-1][1]
    assert meta.idle_for >= 0.2 and meta.age >= meta.idle_for
    verdict["before"] = False
    with pool.connection() as r2:
        assert r2 is not r1 and r1.closed
    verdict["before"] = True
    verdict["after"] = False
    with pool.connection() as r3:
        pass
    assert r3.closed, "after_release returning False closes"
    s = check_invariants(pool)
    assert s["before_acquire_rejections"] == 1 and s["after_release_rejections"] == 1


def test_after_connect_transient_errors_retry_and_others_fail_fast(make: Any, ctx: Ctx) -> None:
    fails = [ConnectionResetError("transient"), ConnectionResetError("transient")]

    def after_connect(r: Res, meta: ConnectionMetadata) -> None:
        if fails:
            raise fails.pop(0)

    pool = make(max_size=1, open=False, after_connect=after_connect)
    with pool.connection(timeout=5) as r:
        assert r.id == 3
    assert [x.id for x in ctx.closed] == [1, 2]

    def bad(r: Res, meta: ConnectionMetadata) -> None:
        raise ValueError("a bug in after_connect")

    pool2 = make(max_size=1, open=False, after_connect=bad)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="a bug"):
        pool2.acquire(timeout=10)
    assert time.monotonic() - t0 < 5, "a deterministic error is not retried until the deadline"


def test_eager_open_and_lazy(make: Any, ctx: Ctx) -> None:
    calls = []
    pool = make(max_size=5, min_size=3, after_connect=lambda r, m: calls.append(r.id))
    assert len(calls) == 3 and pool.stats()["idle"] == 3
    ctx.create_errors.extend([ValueError("nope")] * 3)
    with pytest.raises(ValueError, match="nope"):
        make(max_size=2)
    ctx.create_errors.clear()
    ctx.create_errors.extend([ConnectionRefusedError("refused")] * 10_000)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="could not open 1 connection") as ei:
        make(max_size=2, acquire_timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)
    lazy = make(max_size=2, open=False)
    with pytest.raises(PoolTimeout):
        lazy.acquire(timeout=0.3)


def test_min_size_is_kept_and_idle_timeout_never_reaps_below_it(make: Any, ctx: Ctx) -> None:
    # T004-07 on a plain resource (reaper period 0.5 s)
    pool = make(max_size=5, min_size=2, idle_timeout=1.0)
    held = [pool.acquire() for _ in range(5)]
    for h in held:
        h.release()
    assert pool.stats()["size"] == 5
    assert wait_until(lambda: pool.stats()["size"] == 2, timeout=4)
    survivors = {r.id for r in ctx.created if not r.closed}
    time.sleep(1.6)
    assert {r.id for r in ctx.created if not r.closed} == survivors
    # discarding below min_size triggers a top-up
    pc = pool.acquire()
    pc.close()
    assert wait_until(lambda: pool.stats()["idle"] == 2)


def test_max_lifetime_replaces_idle_and_closes_on_return(make: Any, ctx: Ctx) -> None:
    # T004-06 on a plain resource
    pool = make(max_size=2, max_lifetime=0.6, idle_timeout=None)
    with pool.connection() as r1:
        pass
    time.sleep(0.7)
    with pool.connection() as r2:
        assert r2 is not r1
    assert r1.closed
    pc = pool.acquire()
    time.sleep(0.7)
    assert not pc.connection.closed  # a checked-out connection keeps working
    r = pc.connection
    pc.release()
    assert r.closed


@pytest.mark.parametrize(
    ("kw", "match", "exc"),
    [
        ({"max_size": 0}, "max_size", ValueError),
        ({"min_size": -1}, "min_size", ValueError),
        ({"min_size": 3, "max_size": 2}, "min_size", ValueError),
        ({"acquire_timeout": 0}, "acquire_timeout", ValueError),
        ({"acquire_timeout": float("inf")}, "acquire_timeout", ValueError),
        ({"max_lifetime": -1}, "max_lifetime", ValueError),
        ({"idle_timeout": "10"}, "idle_timeout", TypeError),
        ({"verify_after": -0.1}, "verify_after", ValueError),
        ({"queue_mode": "random"}, "queue_mode", ValueError),
        ({"max_waiting": -1}, "max_waiting", ValueError),
        ({"num_workers": 0}, "num_workers", ValueError),
        ({"after_connect": 42}, "after_connect", TypeError),
        ({"before_acquire": "x"}, "before_acquire", TypeError),
        ({"after_release": 1.5}, "after_release", TypeError),
        ({"max_size": 2.5}, "max_size", TypeError),
    ],
)
def test_invalid_options_name_the_option(
    twin: str, ctx: Ctx, kw: dict[str, Any], match: str, exc: type
) -> None:
    with pytest.raises(exc, match=match):
        ResourcePool(Res, ctx, **kw)
    assert ctx.created == [], "nothing is opened before the options are checked"


def test_pool_options_seed_names(twin: str, ctx: Ctx) -> None:
    opts = fastpool.PoolOptions(max_connections=3, min_connections=2, acquire_timeout=2)
    pool = opts.connect_resource(Res, ctx)
    try:
        assert pool.max_size == 3 and pool.stats()["idle"] == 2
    finally:
        pool.close()
    with pytest.raises(ValueError, match="min_connections"):
        fastpool.PoolOptions(max_connections=1, min_connections=2)
    with pytest.raises(ValueError, match="max_connections"):
        opts.replace(max_connections=0)
    lazy = opts.connect_resource(Res, ctx, lazy=True)
    lazy.close()


def test_fifo_queue_mode_rotates(make: Any, ctx: Ctx) -> None:
    pool = make(max_size=3, min_size=3, queue_mode="fifo")
    seen = []
    for _ in range(6):
        with pool.connection() as r:
            seen.append(r.id)
    assert seen[:3] != [seen[0]] * 3 and sorted(set(seen)) == [1, 2, 3]


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt delivered while a caller is blocked."""


def test_interrupt_while_waiting_leaks_nothing(make: Any, ctx: Ctx) -> None:
    # a signal handler raising inside a blocked acquire (the main thread's Ctrl-C)
    import os
    import signal

    pool = make(max_size=1)
    held = pool.acquire()

    def boom(signum: int, frame: Any) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, boom)
    try:
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        with pytest.raises(Interrupted):
            pool.acquire(timeout=5)
        timer.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
    s = check_invariants(pool)
    assert s["waiting"] == 0 and s["cancelled_waits"] == 1
    held.release()
    s = check_invariants(pool)
    assert s["idle"] == 1, "the returned connection was not handed to the interrupted caller"
    with pool.connection(timeout=1):
        pass


def test_huge_timeout_is_accepted(make: Any) -> None:
    pool = make(max_size=1, acquire_timeout=1e12)
    held = pool.acquire()
    t = threading.Timer(0.1, held.release)
    t.start()
    with pool.connection():  # waits (longer than threading.TIMEOUT_MAX allows in one call)
        pass
    t.join()
