"""``SELECT 1`` end to end through each pool, against a dedicated connection per worker.

Every variant runs the query in autocommit (one round trip), as
``python -m fastpool bench`` does.  1 thread: each timed call runs OPS
queries.  16 threads on 4 pooled connections: each timed call starts 16
threads that run OPS_PER_THREAD queries each (the dedicated-connection
baseline gives each thread its own connection).  The ratio table reports time
per query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastpool._bench.shapes import SELECT1, Impl, Unavailable, sync_pg

from .conftest import in_threads

GROUP_1 = "SELECT 1 end to end, 1 thread"
GROUP_16 = "SELECT 1 end to end, 16 threads on 4 connections"
OPS = 50
THREADS = 16
OPS_PER_THREAD = 12


@pytest.fixture(params=SELECT1)
def query(request: pytest.FixtureRequest, dsn: str) -> Iterator[Callable[[int], Callable[[], None]]]:
    """A factory: ``query(i)`` returns a callable running one SELECT 1 for worker ``i``."""
    name = request.param
    n = THREADS if name == "dedicated connection" else 1  # one connection per worker, or one pool
    impls: list[Impl] = []
    try:
        for _ in range(n):
            impls.append(sync_pg(name, dsn, query="SELECT 1", autocommit=True))
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield lambda i=0: impls[i % n].op
    finally:
        for impl in impls:
            impl.close()


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
    benchmark.extra_info["ops"] = THREADS * OPS_PER_THREAD
    benchmark.pedantic(in_threads(THREADS, OPS_PER_THREAD, query), rounds=10, warmup_rounds=1)
