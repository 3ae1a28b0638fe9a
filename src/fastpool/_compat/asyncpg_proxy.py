"""What ``fastpool.asyncpg.Pool.acquire()`` gives: a proxy of a pooled asyncpg connection.

asyncpg's pool lends a ``PoolConnectionProxy``: it passes every call to the
connection until the connection is released, and raises ``InterfaceError``
afterwards.  asyncpg's ``Connection`` calls back into it: a proxied
connection reports its closing to ``proxy._holder._release_on_close()``, and
drops the statement and type caches of the whole pool through
``proxy._holder._pool``.  This module's proxy keeps that protocol (the proxy
is its own holder, reached through ``con._pool_holder()`` on asyncpg 0.32+)
and adds one thing: it notes whether the borrower did anything that asyncpg's
protocol does not count as a query, so that the pool can prove a return has
nothing to reset (see ``Pool.release``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import update_wrapper
from typing import TYPE_CHECKING, Any, ClassVar

import asyncpg
from asyncpg.connection import _ConnectionProxy

if TYPE_CHECKING:
    from .asyncpg_pool import Pool

__all__ = ["PoolConnectionProxy", "released"]

_Connection: Any = asyncpg.Connection
#: asyncpg 0.32+ tells a connection's pool holder of its closing through ``con._pool_holder()``
#: (earlier versions through ``con._proxy._holder``): a lent connection's holder is its proxy
_POOL_HOLDER = "_pool_holder" in getattr(_Connection, "__slots__", ())


def released(cls: str, method: str) -> asyncpg.InterfaceError:
    """The error of a call on a proxy (or what it made) after its release."""
    return asyncpg.InterfaceError(
        f"cannot call {cls}.{method}(): the connection has been released back to the pool"
    )


class PoolConnectionProxy(_ConnectionProxy):  # type: ignore[misc]  # (asyncpg is untyped: Any)
    """A connection lent by :class:`fastpool.asyncpg.Pool`, as asyncpg's pool lends it.

    Every method of ``asyncpg.Connection`` is available, and
    ``isinstance(proxy, asyncpg.Connection)`` is true.  Once the connection is
    released, every method raises ``asyncpg.InterfaceError``, and so do the
    prepared statements, cursors and transactions made through it.
    ``proxy._con`` is the connection itself (asyncpg's way to unwrap a proxy);
    the pool then resets it at release, whatever the borrower did.
    """

    __slots__ = ("_c", "_entry", "_in_use", "_pool", "_queries", "_timeout", "_touched")
    _c: Any
    _pool: Pool
    _entry: Any
    _timeout: float | None
    _queries: int
    _touched: bool
    _in_use: bool
    # Made by the pool's borrow path only (``asyncpg_lend.DropinPath.lend``), which fills the slots:
    # _c the connection (None once released), _pool the pool, _entry the core's record of it,
    # _timeout the acquire's, _queries what the protocol had sent when lent, _touched whether the
    # borrower ran code the pool cannot see into, _in_use whether a close now ends the borrow.

    #: the descriptors of the slots, in the order the borrow path takes them
    _SLOTS: ClassVar[tuple[str, ...]] = (
        "_c",
        "_pool",
        "_entry",
        "_timeout",
        "_queries",
        "_touched",
        "_in_use",
    )

    @property
    def _con(self) -> Any:
        """The connection itself (None once released): asyncpg's way to unwrap a proxy."""
        self._touched = True  # the borrower may use it behind the proxy's back: reset at release
        return self._c

    @property
    def _holder(self) -> PoolConnectionProxy:
        """What asyncpg's ``Connection`` calls back into (the proxy is its own holder)."""
        return self

    def __call__(self) -> PoolConnectionProxy:
        """The holder (asyncpg 0.32+ calls ``con._pool_holder()``, a weak reference in its pool)."""
        return self

    def _release_on_close(self) -> None:
        """asyncpg's ``Connection`` closed, terminated or lost: the borrow ends here."""
        self._pool._closed_while_lent(self)

    def _detach(self) -> Any:
        """End the borrow: the proxy lets go of its connection, which forgets the proxy."""
        con, self._c = self._c, None
        if con is not None:
            con._proxy = None
            if _POOL_HOLDER:
                con._pool_holder = None
        return con

    def __getattr__(self, name: str) -> Any:
        # what the class does not define: the connection's (a subclass's own methods, private
        # attributes); the pool cannot see what those run, so the return resets
        con = self._c
        if con is None:
            raise AttributeError(f"{name}: the connection has been released back to the pool")
        self._touched = True
        return getattr(con, name)

    def __repr__(self) -> str:
        con = self._c
        if con is None:
            return f"<{type(self).__name__} [released] {id(self):#x}>"
        return f"<{type(self).__name__} {con!r} {id(self):#x}>"


def _forward(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The proxy's ``name``: ``fn`` (``Connection.name``) on the lent connection, as its class has it."""
    touches = name.startswith("copy_")  # COPY is not a query to asyncpg's protocol: it is not counted

    def call(self: PoolConnectionProxy, *args: Any, **kwargs: Any) -> Any:
        con = self._c
        if con is None:
            raise released("Connection", name)
        own = getattr(type(con), name)
        if touches or own is not fn:  # a subclass's override may run anything
            self._touched = True
        return own(con, *args, **kwargs)

    update_wrapper(call, fn)
    if inspect.iscoroutinefunction(fn):
        _mark_coroutine_function(call)
    return call


def _mark_coroutine_function(fn: Any) -> None:
    """Make ``inspect.iscoroutinefunction(fn)`` true of a function that returns a coroutine."""
    mark = getattr(inspect, "markcoroutinefunction", None)  # 3.12+
    if mark is not None:
        mark(fn)
    else:  # what asyncio.iscoroutinefunction and inspect look for before 3.12
        import asyncio.coroutines  # noqa: PLC0415

        fn._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


for _name, _fn in inspect.getmembers(_Connection, inspect.isfunction):
    if not _name.startswith("_") and _name not in PoolConnectionProxy.__dict__:
        setattr(PoolConnectionProxy, _name, _forward(_name, _fn))
PoolConnectionProxy.__doc__ = f"{PoolConnectionProxy.__doc__}\n\n{_Connection.__doc__ or ''}".rstrip()
