"""Checked by mypy (strict) in CI, never run: the pools are typed by their connection class."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from typing_extensions import assert_type

import fastpool


class MyConnection(psycopg.Connection[DictRow]):
    pass


class MyAsyncConnection(psycopg.AsyncConnection[DictRow]):
    pass


def sync_pools() -> None:
    plain = fastpool.ConnectionPool("", open=False)
    assert_type(plain, fastpool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]])
    with plain.connection() as conn:
        assert_type(conn, psycopg.Connection[tuple[Any, ...]])

    pool = fastpool.ConnectionPool[MyConnection]("", connection_class=MyConnection, open=False)
    with pool.connection() as conn2:
        assert_type(conn2, MyConnection)
        row = conn2.execute("SELECT 1 AS x").fetchone()
        assert_type(row, DictRow | None)
    got = pool.getconn()
    assert_type(got, MyConnection)
    pool.putconn(got)

    dict_pool = fastpool.ConnectionPool(
        "", connection_class=psycopg.Connection[DictRow], kwargs={"row_factory": dict_row}, open=False
    )
    with dict_pool.connection() as conn3:
        assert_type(conn3, psycopg.Connection[DictRow])

    null = fastpool.NullConnectionPool[MyConnection]("", connection_class=MyConnection, open=False)
    assert_type(null.getconn(), MyConnection)


async def async_pools() -> None:
    pool = fastpool.AsyncConnectionPool[MyAsyncConnection]("", connection_class=MyAsyncConnection, open=False)
    async with pool.connection() as conn:
        assert_type(conn, MyAsyncConnection)
    got = await pool.getconn()
    assert_type(got, MyAsyncConnection)
    await pool.putconn(got)

    plain = fastpool.AsyncConnectionPool("", open=False)
    async with plain.connection() as conn2:
        assert_type(conn2, psycopg.AsyncConnection[tuple[Any, ...]])

    null = fastpool.AsyncNullConnectionPool[MyAsyncConnection](
        "", connection_class=MyAsyncConnection, open=False
    )
    assert_type(await null.getconn(), MyAsyncConnection)


def conninfo_functions() -> None:
    def token() -> str:
        return "host=127.0.0.1 password=rotated"

    async def atoken() -> str:
        return "host=127.0.0.1 password=rotated"

    fastpool.ConnectionPool(token, open=False)
    fastpool.AsyncConnectionPool(atoken, open=False)
    fastpool.Pool(conninfo=token, open=False)
