"""pure-Python build of ``fastpool._core``: what the compiled core does in C.

The clock, the socket probe, the borrow path's mutex and the asyncio borrow
(an async context manager that is also a finished awaitable).  The pure-Python
pool core (``_core_pool.py`` run as it is) takes these; the compiled one
cimports ``_core.pyx`` instead.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Generator
from time import monotonic as now  # the pool's clock, as the pure-Python core reads it
from typing import Any

__all__ = [
    "AsyncBorrow",
    "Lock",
    "PathBase",
    "fd_readable",
    "monotonic",
    "now",
    "readable",
    "slot_get",
    "slot_set",
    "step",
]


def monotonic() -> float:
    """The pool's clock: ``time.monotonic()`` (the compiled build reads it in C)."""
    return now()


Lock = threading.Lock  # the threaded pools' mutex


def slot_get(descr: Any, obj: Any) -> Any:
    """``descr.__get__(obj)``: an attribute read through its descriptor (a class's __slots__ member)."""
    return descr.__get__(obj, type(obj))


def slot_set(descr: Any, obj: Any, value: Any) -> None:
    """``descr.__set__(obj, value)``: an attribute write through its descriptor (a __slots__ member)."""
    descr.__set__(obj, value)


def step(coro: Any, done: Any) -> Any:
    """Send None into ``coro``: what it waits on next, or ``done`` if it returned (its value is
    dropped); its exception propagates."""
    try:
        return coro.send(None)
    except StopIteration:
        return done


def fd_readable(fd: int) -> int:
    """1 when ``fd`` has something to read (or EOF, or an error), 0 when not, < 0 when invalid."""
    if not hasattr(select, "poll"):  # pragma: no cover - platforms without poll
        r, _, _ = select.select((fd,), (), (), 0)
        return 1 if r else 0
    p = select.poll()
    p.register(fd, select.POLLIN)
    events = p.poll(0)
    if events and events[0][1] & select.POLLNVAL:
        return -2
    return 1 if events else 0


def readable(fd: int) -> bool:
    """Say whether ``fd`` has data (or EOF, or an error) to read, without waiting.

    One ``poll()`` with a zero timeout: the pools' I/O-free probe of an idle
    connection.  Raises ``OSError`` for an invalid descriptor.
    """
    r = fd_readable(fd)
    if r == -2:
        raise OSError(9, "Bad file descriptor")
    return r > 0


class PathBase:
    """Base of the asyncio borrow path: what :class:`AsyncBorrow` calls to enter and exit."""

    __slots__ = ()

    def _aenter(self, b: AsyncBorrow) -> Any:
        raise NotImplementedError

    def _aexit(self, b: AsyncBorrow, ok: bool) -> Any:
        raise NotImplementedError


class AsyncBorrow:
    """The async context manager returned by ``pool.connection()``, and a finished awaitable.

    When nothing needs awaiting, ``__aenter__``/``__aexit__`` return the
    borrow itself, already finished with its result: no coroutine is created.
    (Compiled, ``await`` takes the result through ``am_send``, raising no
    StopIteration.)
    """

    _fp: PathBase | None = None
    _timeout: Any = None
    _entry: Any = None
    _result: Any = None

    def __aenter__(self) -> Any:
        if self._fp is None:
            raise TypeError("this awaitable is not a connection() context")
        return self._fp._aenter(self)

    def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        if self._fp is None:
            raise TypeError("this awaitable is not a connection() context")
        return self._fp._aexit(self, exc_type is None)

    def __await__(self) -> Generator[Any, None, Any]:
        # a generator that returns at once: Python hands its value over without raising
        # StopIteration, which a __next__ written in Python would have to
        r = self._result
        self._result = None
        return r
        yield  # pragma: no cover - (makes this a generator)
