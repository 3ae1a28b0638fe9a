"""``SELECT 1`` end to end through each pool, against a dedicated connection per worker.

Every variant runs the query as psycopg does by default (in a transaction,
committed at the end of the borrow).  1 thread: each timed call runs OPS queries.
16 threads on 4 pooled connections:
each timed call starts 16 threads that run OPS_PER_THREAD queries each (the
dedicated-connection baseline gives each thread its own connection).  The
ratio table reports time per query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import fastpool
from fastpool import _core_select

GROUP_1 = "SELECT 1 end to end, 1 thread"
GROUP_16 = "SELECT 1 end to end, 16 threads on 4 connections"
OPS = 50
THREADS = 16
OPS_PER_THREAD = 12

IMPLS = ["fastpool[c]", "fastpool[python]", "psycopg_pool", "dedicated connection"]


def _twin(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    try:
        monkeypatch.setattr(
            _core_select, "core", _core_select.load("c" if name == "fastpool[c]" else "python")
        )  # type: ignore[arg-type]
    except ImportError:
        pytest.skip("compiled core not built")


@pytest.fixture(params=IMPLS)
def query(request: pytest.FixtureRequest, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory: ``query(i)`` returns a callable running one SELECT 1 for worker ``i``."""
    name = request.param
    if name.startswith("fastpool"):
        _twin(monkeypatch, name)
        pool = fastpool.Pool(dsn, min_size=4, max_size=4)

        def one() -> None:
            with pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()

        yield lambda i=0: one
        pool.close()
    elif name == "psycopg_pool":
        psycopg_pool = pytest.importorskip("psycopg_pool")
        ppool = psycopg_pool.ConnectionPool(dsn, min_size=4, max_size=4, open=True)
        ppool.wait()

        def one_pp() -> None:
            with ppool.connection() as conn:
                conn.execute("SELECT 1").fetchone()

        yield lambda i=0: one_pp
        ppool.close()
    else:
        # one connection per worker, made once: worker i always uses conns[i].  It does
        # what a borrow does with psycopg's defaults: the query in a transaction, then
        # COMMIT (the pools commit at the end of the `with` block).
        conns = [psycopg.connect(dsn) for _ in range(THREADS)]

        def factory(i: int = 0) -> Callable[[], None]:
            conn = conns[i]

            def one_dedicated() -> None:
                conn.execute("SELECT 1").fetchone()
                conn.commit()

            return one_dedicated

        yield factory
        for c in conns:
            c.close()


@pytest.mark.benchmark(group=GROUP_1)
def test_select1_one_thread(benchmark: Any, query: Any) -> None:
    one = query()

    def run() -> None:
        for _ in range(OPS):
            one()

    benchmark.extra_info["ops"] = OPS
    benchmark(run)


@pytest.mark.benchmark(group=GROUP_16)
def test_select1_sixteen_threads(benchmark: Any, query: Any) -> None:
    def worker(i: int, barrier: threading.Barrier) -> None:
        one = query(i)
        barrier.wait(timeout=30)
        for _ in range(OPS_PER_THREAD):
            one()

    def run() -> None:
        barrier = threading.Barrier(THREADS)
        threads = [threading.Thread(target=worker, args=(i, barrier)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    benchmark.extra_info["ops"] = THREADS * OPS_PER_THREAD
    benchmark.pedantic(run, rounds=15, warmup_rounds=1)
