"""Borrow + return with no query, one thread: fastpool (both twins) beside its peers.

Run: ``pytest bench/ --benchmark-only --benchmark-group-by=group``; the ratio
table is printed at the end.  Peers missing from the environment are skipped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fastpool
from fastpool import _core_select

GROUP_PG = "borrow+return, no query, 1 thread (psycopg, 4 connections)"
GROUP_RES = "borrow+return, 1 thread (plain resource, no database)"
GROUP_16 = "borrow+return, no query, 16 threads on 4 connections (psycopg)"
THREADS = 16
# Each benchmarked call does OPS borrows, so that the harness's own per-call cost
# (about a microsecond here) does not blur sub-microsecond differences; the
# ratio table reports per-borrow times (extra_info["ops"]).
OPS = 100


def _bench(benchmark: Any, op: Callable[[], None]) -> None:
    def run() -> None:
        for _ in range(OPS):
            op()

    benchmark.extra_info["ops"] = OPS
    benchmark(run)


def _use_twin(monkeypatch: pytest.MonkeyPatch, twin: str) -> None:
    try:
        monkeypatch.setattr(_core_select, "core", _core_select.load(twin))  # type: ignore[arg-type]
    except ImportError:
        pytest.skip("compiled core not built")


def _floor() -> Callable[[], None]:
    dq: deque[object] = deque(object() for _ in range(4))
    lock = threading.Lock()

    def run() -> None:
        with lock:
            c = dq.pop()
        with lock:
            dq.append(c)

    return run


@pytest.fixture(
    params=[
        "fastpool[c]",
        "fastpool[python]",
        "fastpool[c] getconn/putconn",
        "fastpool[python] getconn/putconn",
        "psycopg_pool connection()",
        "psycopg_pool getconn/putconn",
        "sqlalchemy QueuePool",
        "floor: deque+Lock",
    ]
)
def pg_borrow(request: pytest.FixtureRequest, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    name = request.param
    if name.startswith("fastpool"):
        _use_twin(monkeypatch, "c" if name.startswith("fastpool[c]") else "python")
        pool = fastpool.Pool(dsn, min_size=4, max_size=4)
        if name.endswith("getconn/putconn"):

            def run() -> None:
                pool.putconn(pool.getconn())
        else:

            def run() -> None:
                with pool.connection():
                    pass

        yield run
        pool.close()
    elif name.startswith("psycopg_pool"):
        psycopg_pool = pytest.importorskip("psycopg_pool")
        ppool = psycopg_pool.ConnectionPool(dsn, min_size=4, max_size=4, open=True)
        ppool.wait()
        if name.endswith("connection()"):

            def run() -> None:
                with ppool.connection():
                    pass
        else:

            def run() -> None:
                ppool.putconn(ppool.getconn())

        yield run
        ppool.close()
    elif name.startswith("sqlalchemy"):
        sa_pool = pytest.importorskip("sqlalchemy.pool")
        import psycopg

        qp = sa_pool.QueuePool(lambda: psycopg.connect(dsn), pool_size=4, max_overflow=0)
        warm = [qp.connect() for _ in range(4)]
        for c in warm:
            c.close()

        def run() -> None:
            qp.connect().close()

        yield run
        qp.dispose()
    else:
        yield _floor()


@pytest.mark.benchmark(group=GROUP_PG)
def test_pg_borrow_return(benchmark: Any, pg_borrow: Callable[[], None]) -> None:
    _bench(benchmark, pg_borrow)


class _Thing(fastpool.BaseResource[None]):
    @classmethod
    def create(cls, ctx: None) -> _Thing:
        return cls()


@pytest.fixture(params=["fastpool[c]", "fastpool[python]", "floor: deque+Lock"])
def res_borrow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    name = request.param
    if name == "floor: deque+Lock":
        yield _floor()
        return
    _use_twin(monkeypatch, "c" if name == "fastpool[c]" else "python")
    pool: fastpool.ResourcePool[_Thing] = fastpool.ResourcePool(_Thing, None, min_size=4, max_size=4)

    def run() -> None:
        with pool.connection():
            pass

    yield run
    pool.close()


@pytest.mark.benchmark(group=GROUP_RES)
def test_resource_borrow_return(benchmark: Any, res_borrow: Callable[[], None]) -> None:
    _bench(benchmark, res_borrow)


@pytest.mark.benchmark(group=GROUP_16)
def test_pg_borrow_return_16_threads(benchmark: Any, pg_borrow: Callable[[], None]) -> None:
    """16 threads share 4 connections; each timed call runs OPS borrows in every thread."""

    def worker(barrier: threading.Barrier) -> None:
        barrier.wait(timeout=30)
        for _ in range(OPS):
            pg_borrow()

    def run() -> None:
        barrier = threading.Barrier(THREADS)
        threads = [threading.Thread(target=worker, args=(barrier,)) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    benchmark.extra_info["ops"] = THREADS * OPS
    benchmark.pedantic(run, rounds=10, warmup_rounds=1)
