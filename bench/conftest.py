"""Benchmark fixtures: the database, the shared shapes, and the ratio table printed at the end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from fastpool._bench.shapes import Impl, Unavailable, resolve_dsn

from .ratios import name_of, table


@pytest.fixture(scope="session")
def dsn() -> str:
    """The database of ``resolve_dsn()``; the DB benchmarks skip without one."""
    dsn = resolve_dsn()
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server for the DB benchmarks ({dsn}): {exc}")
    return dsn


def built(make: Any, *args: Any, **kwargs: Any) -> Iterator[Impl]:
    """Build one implementation for a fixture (skip when it cannot run here), close it afterwards."""
    try:
        impl = make(*args, **kwargs)
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield impl
    finally:
        impl.close()


def in_threads(n: int, ops: int, op_for: Callable[[int], Callable[[], Any]]) -> Callable[[], None]:
    """One timed call: ``n`` threads start together, thread ``i`` runs ``op_for(i)`` ``ops`` times."""

    def worker(i: int, barrier: threading.Barrier) -> None:
        op = op_for(i)
        barrier.wait(timeout=30)
        for _ in range(ops):
            op()

    def run() -> None:
        barrier = threading.Barrier(n)
        threads = [threading.Thread(target=worker, args=(i, barrier)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private event loop for the asyncio shapes."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled or not session.benchmarks:
        return
    rows = [
        (b.group or "", name_of(b.fullname, b.param), b.stats.median / b.extra_info.get("ops", 1))
        for b in session.benchmarks
        if b.stats and b.stats.rounds
    ]
    if rows:
        terminalreporter.write_sep("-", "ratios (median per borrow / fastpool (compiled)'s: lower is better)")
        terminalreporter.write_line(table(rows))
