"""asyncpg's query shortcuts on a pool: each borrows a connection for one call and releases it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asyncpg_lend import AcquireContext, DropinPath

__all__ = ["QueryShortcuts"]


class QueryShortcuts:
    """``pool.fetch(...)`` and the rest: ``Connection``'s method on a connection of the pool's.

    Each behaves as the ``asyncpg.Connection`` method of the same name (the keyword
    arguments of the COPY methods are passed on as they are).
    """

    __slots__ = ()
    _path: DropinPath  # (the pool's borrow path)

    def _one(self) -> AcquireContext:
        return self._path.acquire(None)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        """Run an SQL command (or several, without arguments); return the last one's status."""
        async with self._one() as con:
            return await con.execute(query, *args, timeout=timeout)

    async def executemany(self, command: str, args: Any, *, timeout: float | None = None) -> None:
        """Run ``command`` once for each sequence of arguments in ``args``."""
        async with self._one() as con:
            await con.executemany(command, args, timeout=timeout)

    async def fetch(
        self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None
    ) -> Any:
        """Run a query and return every row, as records."""
        async with self._one() as con:
            return await con.fetch(query, *args, timeout=timeout, record_class=record_class)

    async def fetchval(
        self, query: str, *args: Any, column: int | str = 0, timeout: float | None = None
    ) -> Any:
        """Run a query and return one value of its first row (None when there is no row)."""
        async with self._one() as con:
            return await con.fetchval(query, *args, column=column, timeout=timeout)

    async def fetchrow(
        self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None
    ) -> Any:
        """Run a query and return its first row (None when there is none)."""
        async with self._one() as con:
            return await con.fetchrow(query, *args, timeout=timeout, record_class=record_class)

    async def fetchmany(
        self, query: str, args: Any, *, timeout: float | None = None, record_class: Any = None
    ) -> Any:
        """Run a query for each sequence of arguments in ``args``; return every row of them all."""
        async with self._one() as con:
            return await con.fetchmany(query, args, timeout=timeout, record_class=record_class)

    async def copy_from_table(self, table_name: str, *, output: Any, **options: Any) -> Any:
        """Copy a table's rows to ``output`` (a path, a file-like object or a coroutine function)."""
        async with self._one() as con:
            return await con.copy_from_table(table_name, output=output, **options)

    async def copy_from_query(self, query: str, *args: Any, output: Any, **options: Any) -> Any:
        """Copy a query's rows to ``output``."""
        async with self._one() as con:
            return await con.copy_from_query(query, *args, output=output, **options)

    async def copy_to_table(self, table_name: str, *, source: Any, **options: Any) -> Any:
        """Copy rows from ``source`` (a path, a file-like object or an async iterable) into a table."""
        async with self._one() as con:
            return await con.copy_to_table(table_name, source=source, **options)

    async def copy_records_to_table(self, table_name: str, *, records: Any, **options: Any) -> Any:
        """Copy ``records`` (an iterable or async iterable of tuples) into a table, in binary COPY."""
        async with self._one() as con:
            return await con.copy_records_to_table(table_name, records=records, **options)
