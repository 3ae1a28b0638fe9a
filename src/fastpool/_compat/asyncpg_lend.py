"""The borrow path of ``fastpool.asyncpg.Pool``: lend a proxy, take it back.

Written once, compiled with ``asyncpg_lend.pxd`` in the same build as the
core it serves, or run as it is (loaded as ``fastpool._compat.asyncpg_lend_pure``).
What a borrow of the drop-in costs beyond the core's borrow path is here:

* :class:`DropinPath.lend` makes the proxy (``PoolConnectionProxy``, a plain
  class with ``__slots__``) and fills its slots through their descriptors;
* :class:`DropinPath.give_back` does asyncpg's release bookkeeping (the
  release counter that invalidates what was made through the proxy), detaches
  the proxy, and gives the connection straight back to the core when the
  driver's gates prove there is nothing to reset; otherwise, and for a
  ``reset=`` hook that waits, it calls the pool's Python slow path;
* :class:`AcquireContext` is what ``pool.acquire()`` returns: ``async with``
  and ``await`` take a finished awaitable (the core's ``AsyncBorrow``) when
  nothing has to wait, so no coroutine is made.

It imports nothing of asyncpg: what it reads and writes on asyncpg's objects
(slot descriptors, classes, the error to raise) the pool finds and passes in.
"""

from __future__ import annotations

from types import CoroutineType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .. import _core_nocython as cython
    from .._core_pool import AsyncFastPath, Entry
    from .._drivers.asyncpg_gates import AsyncpgGates
else:
    try:
        import cython
    except ImportError:  # a pure-Python install: no Cython, and this module runs as it is
        from .. import _core_nocython as cython
    if not cython.compiled:  # run as Python: the pure build's core (compiled, the .pxd cimports it)
        from .._core_build import load as _load_core

        _core = _load_core("python")
        Entry = _core.Entry
if not cython.compiled:
    from .._core_pure import AsyncBorrow, now, slot_get, slot_set, step

__all__ = ["AcquireContext", "DropinPath"]


def _finished(value: Any) -> Any:
    """An awaitable that is already done, with ``value`` as its result (no coroutine)."""
    b = AsyncBorrow.__new__(AsyncBorrow)
    b._result = value
    return b


_DONE = _finished(None)  # (its result is None every time it is awaited)


class AcquireContext:
    """What ``pool.acquire()`` returns: ``con = await pool.acquire()``, or
    ``async with pool.acquire() as con:`` (the connection is released at the end)."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("_done", "_path", "_proxy", "_timeout")

    def __init__(self, path: DropinPath, timeout: Any) -> None:
        self._path = path
        self._timeout = timeout
        self._proxy = None
        self._done = False

    def __aenter__(self) -> Any:
        path = self._path
        if self._proxy is not None or self._done:
            raise path._iface_error("a connection is already acquired")
        r = path.take(self._timeout)
        if type(r) is path._proxy_cls:
            self._proxy = r
            return _finished(r)
        return path._enter_slow(self, r)

    def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        self._done = True
        p = self._proxy
        if p is not None:
            self._proxy = None
            self._path.give_back(p, None)
        return _DONE

    def __await__(self) -> Any:
        self._done = True
        path = self._path
        r = path.take(self._timeout)
        if type(r) is path._proxy_cls:
            return _finished(r).__await__()
        return r.__await__()


class DropinPath:
    """The drop-in pool's per-borrow path (see the module docstring).

    ``proxy_slots`` are the descriptors of the proxy class's ``_c``, ``_pool``,
    ``_entry``, ``_timeout``, ``_queries``, ``_touched`` and ``_in_use``;
    ``conn_slots`` those of asyncpg's ``Connection._proxy``, ``._pool_holder``
    (None before asyncpg 0.32), ``._protocol``, ``._pool_release_ctr``,
    ``._listeners`` and ``._log_listeners``, then the protocol's ``queries_count``.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "_c_ctr", "_c_holder", "_c_listeners", "_c_log_listeners", "_c_protocol", "_c_proxy",
            "_conn_cls", "_coro_type", "_entry_cls", "_fast", "_gates", "_iface_error", "_max_queries",
            "_new", "_p_c", "_p_entry", "_p_in_use", "_p_pool", "_p_queries", "_p_timeout", "_p_touched",
            "_pool", "_proxy_cls", "_q", "_reset_hook", "_setup", "ready",
        )  # fmt: skip

    def __init__(
        self,
        pool: Any,
        fast: AsyncFastPath,
        gates: AsyncpgGates,
        proxy_cls: Any,
        proxy_slots: tuple[Any, ...],
        conn_cls: Any,
        conn_slots: tuple[Any, ...],
        hooks: tuple[Any, Any],
        max_queries: int,
        iface_error: Any,
    ) -> None:
        self.ready = False  # the pool is open (until then take() asks the pool why not)
        self._pool = pool  # a weak reference
        self._fast = fast
        self._gates = gates
        self._proxy_cls = proxy_cls
        self._new = object.__new__
        self._entry_cls = Entry
        self._p_c, self._p_pool, self._p_entry, self._p_timeout = proxy_slots[:4]
        self._p_queries, self._p_touched, self._p_in_use = proxy_slots[4:]
        self._conn_cls = conn_cls
        self._c_proxy, self._c_holder, self._c_protocol, self._c_ctr = conn_slots[:4]
        self._c_listeners, self._c_log_listeners, self._q = conn_slots[4:]
        self._setup, self._reset_hook = hooks
        self._max_queries = max_queries
        self._iface_error = iface_error
        self._coro_type = CoroutineType  # what an async def function returns

    def acquire(self, timeout: Any) -> AcquireContext:
        """``pool.acquire(timeout=)``."""
        ctx = AcquireContext.__new__(AcquireContext)
        ctx._path = self
        ctx._timeout = timeout
        ctx._proxy = None
        ctx._done = False
        return ctx

    def take(self, timeout: Any) -> Any:
        """A lent proxy now when nothing has to wait, else a coroutine of the pool's giving one."""
        if not self.ready:
            self._pool()._check_open()
        r = self._fast.get(timeout)
        if type(r) is not Entry or self._setup is not None:
            return self._pool()._take_slow(r, timeout)
        return self.lend(r, timeout, True)

    async def _enter_slow(self, ctx: AcquireContext, r: Any) -> Any:
        p = await r
        ctx._proxy = p
        return p

    def lend(self, e: Entry, timeout: Any, in_use: bool) -> Any:
        """A new proxy of ``e.conn``: it holds the connection, which knows it as its proxy
        (and, on asyncpg 0.32+, as its pool holder)."""
        con = e.conn
        p = self._new(self._proxy_cls)
        slot_set(self._p_c, p, con)
        slot_set(self._p_pool, p, self._pool())
        slot_set(self._p_entry, p, e)
        slot_set(self._p_timeout, p, timeout)
        slot_set(self._p_queries, p, slot_get(self._q, slot_get(self._c_protocol, con)))
        slot_set(self._p_touched, p, False)
        slot_set(self._p_in_use, p, in_use)
        slot_set(self._c_proxy, con, p)
        if self._c_holder is not None:
            slot_set(self._c_holder, con, p)
        return p

    def give_back(self, p: Any, timeout: Any) -> None:
        """``pool.release(p)``: back to the core at once when there is provably nothing to reset
        (and no ``reset=`` hook waits), else through the pool's reset, off the caller's path."""
        con = slot_get(self._p_c, p)
        if con is None or not slot_get(self._p_in_use, p):  # released already, or closed while lent
            return
        slot_set(self._p_in_use, p, False)
        if (
            type(con) is self._conn_cls
            and not slot_get(self._c_listeners, con)
            and not slot_get(self._c_log_listeners, con)
        ):  # asyncpg's Connection._on_release, which has nothing to warn about: its counter only
            slot_set(self._c_ctr, con, slot_get(self._c_ctr, con) + 1)
        else:
            con._on_release()
        slot_set(self._p_c, p, None)
        slot_set(self._c_proxy, con, None)
        if self._c_holder is not None:
            slot_set(self._c_holder, con, None)
        e = slot_get(self._p_entry, p)
        queries = slot_get(self._p_queries, p)
        if queries >= self._max_queries:
            self._pool()._discard(e)
            return
        if slot_get(self._p_touched, p) or not self._gates.pristine(e, queries):
            self._pool()._reset_later(
                e, con, timeout if timeout is not None else slot_get(self._p_timeout, p)
            )
            return
        hook = self._reset_hook
        if hook is not None:  # asyncpg's _reset() has nothing to do: the hook alone, here if it waits not
            r = hook(con)
            if type(r) is self._coro_type:
                try:
                    waiting_on = step(r, _DONE)
                except BaseException as exc:
                    self._pool()._reset_failed(e, con, exc)
                    return
                if waiting_on is not _DONE:
                    self._pool()._hook_later(e, con, r, waiting_on, timeout)
                    return
            elif r is not None:  # another awaitable: the pool awaits it
                self._pool()._hook_later(e, con, None, r, timeout)
                return
        self._fast.release(e, now())
