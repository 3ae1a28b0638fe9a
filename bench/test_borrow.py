"""Borrow + return with no query: fastpool (both builds) beside its peers, 1 thread and 16 threads.

Run: ``pytest bench/ --benchmark-only --benchmark-group-by=group``; the ratio
table is printed at the end.  Peers missing from the environment are skipped.
The implementations are the shapes of ``fastpool._bench.shapes``, as in
``python -m fastpool bench``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fastpool._bench.shapes import PLAIN, SYNC, Impl, plain, sync_pg

from .conftest import built, in_threads

GROUP_PG = "borrow+return, no query, 1 thread (psycopg, 4 connections)"
GROUP_RES = "borrow+return, 1 thread (plain resource, no database)"
GROUP_16 = "borrow+return, no query, 16 threads on 4 connections (psycopg)"
THREADS = 16
# Each benchmarked call does OPS borrows, so that the harness's own per-call cost
# (about a microsecond here) does not blur sub-microsecond differences; the
# ratio table reports per-borrow times (extra_info["ops"]).
OPS = 100


def _bench(benchmark: Any, impl: Impl) -> None:
    op = impl.op

    def run() -> None:
        for _ in range(OPS):
            op()

    benchmark.extra_info["ops"] = OPS
    benchmark(run)


@pytest.fixture(params=SYNC)
def pg_impl(request: pytest.FixtureRequest, dsn: str) -> Iterator[Impl]:
    yield from built(sync_pg, request.param, dsn)


@pytest.fixture(params=PLAIN)
def res_impl(request: pytest.FixtureRequest) -> Iterator[Impl]:
    yield from built(plain, request.param)


@pytest.mark.benchmark(group=GROUP_PG)
def test_pg_borrow_return(benchmark: Any, pg_impl: Impl) -> None:
    _bench(benchmark, pg_impl)


@pytest.mark.benchmark(group=GROUP_RES)
def test_resource_borrow_return(benchmark: Any, res_impl: Impl) -> None:
    _bench(benchmark, res_impl)


@pytest.mark.benchmark(group=GROUP_16)
def test_pg_borrow_return_16_threads(benchmark: Any, pg_impl: Impl) -> None:
    """16 threads share 4 connections; each timed call runs OPS borrows in every thread."""
    benchmark.extra_info["ops"] = THREADS * OPS
    benchmark.pedantic(in_threads(THREADS, OPS, lambda i: pg_impl.op), rounds=10, warmup_rounds=1)
