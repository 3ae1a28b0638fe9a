"""Benchmark fixtures: the database, and the ratio table printed at the end."""

from __future__ import annotations

import os
from typing import Any

import psycopg
import pytest

from .ratios import name_of, table

LOCAL_DSN = "host=127.0.0.1 dbname=test user=postgres"


@pytest.fixture(scope="session")
def dsn() -> str:
    """FASTPOOL_TEST_DSN or the local server; the DB benchmarks skip without one."""
    dsn = os.environ.get("FASTPOOL_TEST_DSN", LOCAL_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server for the DB benchmarks ({dsn}): {exc}")
    return dsn


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
        terminalreporter.write_sep("-", "ratios (median per borrow; >1x means slower than fastpool[c])")
        terminalreporter.write_line(table(rows))
