"""Bad input gets a clear error at the earliest point, naming the option; no password anywhere."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import fastpool
from fastpool import AsyncConnectionPool, AsyncPool, AsyncResourcePool, PoolTimeout
from fastpool._drivers.postgres import endpoints

from .acompat import skip_sync
from .resources_async import AsyncRes, Ctx

SECRET = "hunter2"


def chain_text(exc: BaseException | None) -> str:
    """Every message in an exception's cause and context chain."""
    out = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


@pytest.mark.parametrize(
    "conninfo",
    [
        f"postgresql://postgres:{SECRET}%zz@127.0.0.1:1/test",  # an invalid percent-encoding
        f"postgresql://postgres:{SECRET}@[::1/test",  # an unterminated IPv6 host
        f"postgresql://127.0.0.1:1/test?password={SECRET}&bogus_option=1",
        f"host=127.0.0.1 port=1 password={SECRET} bogus_option=1",
        f"host=127.0.0.1 port=1 password='{SECRET} x' dbname='unterminated",
    ],
)
async def test_no_password_in_conninfo_errors(build: str, conninfo: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpool")
    with pytest.raises((ValueError, psycopg.Error)) as ei:
        AsyncPool(conninfo, open=False)
    assert "conninfo" in str(ei.value) or "option" in str(ei.value)
    assert SECRET not in chain_text(ei.value)
    assert SECRET not in caplog.text


@pytest.mark.db
@pytest.mark.parametrize(
    "conninfo",
    [
        f"postgresql://postgres:{SECRET}@127.0.0.1:1/test",
        f"postgresql://127.0.0.1:1/test?user=postgres&password={SECRET}",
        f"host=127.0.0.1 port=1 user=postgres password={SECRET}",
    ],
)
async def test_no_password_in_runtime_errors_reprs_and_logs(build: str, conninfo: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpool")
    pool = AsyncPool(conninfo, open=False, acquire_timeout=1, fail_fast_after=0.3)
    try:
        with pytest.raises(PoolTimeout) as ei:
            await pool.acquire(timeout=0.5)
        assert "127.0.0.1:1" in str(ei.value)
        texts = [chain_text(ei.value), repr(pool), str(pool.stats())]
        with pytest.raises(PoolTimeout) as ei2:  # the breaker's error, once it is open
            await pool.acquire(timeout=0.5)
        texts.append(chain_text(ei2.value))
    finally:
        await pool.close()
    with pytest.raises(PoolTimeout) as ei3:
        await AsyncPool.connect(conninfo, acquire_timeout=0.5)
    texts += [chain_text(ei3.value), caplog.text]
    for text in texts:
        assert SECRET not in text


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"max_size": 2**63}, ValueError, "max_size"),
        ({"max_size": 10**12}, ValueError, "max_size"),
        ({"max_size": 10**7}, ValueError, "max_size"),
        ({"min_size": 2**63, "max_size": 2}, ValueError, "min_size"),
        ({"test_before_acquire": "no"}, TypeError, "test_before_acquire"),
        ({"open": "yes"}, TypeError, "open"),
        ({"release_timeout": 0}, ValueError, "release_timeout"),
        ({"fail_fast_after": -1}, ValueError, "fail_fast_after"),
        ({"fail_fast_after": float("nan")}, ValueError, "fail_fast_after"),
        ({"num_workers": 10**9}, ValueError, "num_workers"),
        ({"kwargs": "x"}, TypeError, "kwargs"),
        ({"connection_class": int}, TypeError, "connection_class"),
        ({"connection_class": object}, TypeError, "connection_class"),
    ],
)
async def test_pool_options_are_checked_at_construction(
    build: str, kw: dict[str, Any], exc: type, match: str
) -> None:
    with pytest.raises(exc, match=match):
        AsyncPool("host=127.0.0.1 port=1 dbname=x user=x", **kw)


async def test_target_session_attrs_is_checked_at_construction(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="target_session_attrs must be one of"):
        AsyncPool("host=127.0.0.1 port=1 dbname=x user=x target_session_attrs=master", open=False)
    with pytest.raises(ValueError, match="target_session_attrs"):
        AsyncConnectionPool("host=127.0.0.1 port=1", kwargs={"target_session_attrs": "rw"}, open=False)
    monkeypatch.setenv("PGTARGETSESSIONATTRS", "writable")  # libpq reads it too
    with pytest.raises(ValueError, match="target_session_attrs"):
        AsyncPool("host=127.0.0.1 port=1 dbname=x user=x", open=False)


@pytest.mark.parametrize(
    ("conninfo", "where"),
    [
        ("host=a,b port=5433,5434 target_session_attrs=read-write", "a:5433,b:5434"),
        ("host=a,b port=6000", "a:6000,b:6000"),
        ("host=a,b", "a:5432,b:5432"),
        ("postgresql://u:secret@a:1,b:2/db?target_session_attrs=primary", "a:1,b:2"),
        ("host=/run/postgresql port=5439", "local socket (port 5439)"),
    ],
)
async def test_a_multi_host_conninfo_names_every_server(conninfo: str, where: str) -> None:
    assert endpoints(conninfo_to_dict(conninfo)) == where


async def test_connect_errors_name_every_server(build: str) -> None:
    pool = AsyncPool("host=127.0.0.1,127.0.0.1 port=1,2 dbname=x user=x", open=False)
    with pytest.raises(PoolTimeout, match=r"127\.0\.0\.1:1,127\.0\.0\.1:2"):
        await pool.open(wait=True, timeout=0.5)


@skip_sync
async def test_the_other_kind_of_connection_class_is_refused(build: str) -> None:
    with pytest.raises(TypeError, match="connection_class"):
        AsyncPool("host=127.0.0.1 port=1 dbname=x user=x", connection_class=psycopg.Connection)


async def test_a_huge_max_size_allocates_by_use(build: str) -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pool = AsyncResourcePool(AsyncRes, Ctx(), max_size=1_000_000, open=False)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used < 200_000, f"{used} bytes for an empty pool"
    await pool.close()


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"reconnect_timeout": -1}, ValueError, "reconnect_timeout"),
        ({"max_idle": float("nan")}, ValueError, "max_idle"),
        ({"max_lifetime": 0}, ValueError, "max_lifetime"),
        ({"timeout": "30"}, TypeError, "timeout"),
        ({"max_waiting": -1}, ValueError, "max_waiting"),
        ({"num_workers": 0}, ValueError, "num_workers"),
        ({"max_size": 2**63}, ValueError, "max_size"),
        ({"open": "yes"}, TypeError, "open"),
        ({"close_returns": 1}, TypeError, "close_returns"),
        ({"kwargs": "x"}, TypeError, "kwargs"),
        ({"connection_class": int}, TypeError, "connection_class"),
    ],
)
async def test_psycopg_pool_parameters_are_checked_under_their_names(
    build: str, kw: dict[str, Any], exc: type, match: str
) -> None:
    kw.setdefault("open", False)
    with pytest.raises(exc, match=match):
        AsyncConnectionPool("host=127.0.0.1 port=1 dbname=x user=x", **kw)


@pytest.mark.parametrize(
    ("timeout", "exc"),
    [
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("x", TypeError),
        (True, TypeError),
    ],
)
async def test_per_call_timeout_is_checked_on_the_fast_path(build: str, timeout: Any, exc: type) -> None:
    pool = AsyncResourcePool(AsyncRes, Ctx(), max_size=1, min_size=1)
    try:
        async with pool.connection():
            pass  # now one connection is idle: the borrow takes the compiled fast path
        with pytest.raises(exc, match="timeout"):
            async with pool.connection(timeout=timeout):
                pass
        with pytest.raises(exc, match="timeout"):
            await pool.acquire(timeout=timeout)
        assert pool.stats()["in_use"] == 0
    finally:
        await pool.close()


async def test_errors_are_fastpool_errors() -> None:
    assert issubclass(fastpool.PoolTimeout, psycopg.OperationalError)
