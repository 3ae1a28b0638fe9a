"""What a surface may use of a pool: the declared interface, and nothing else.

The surfaces (``fastpool.AsyncPool`` and ``Pool``, leadership, ownership, the
sandbox, the psycopg_pool surface, ``fastpool.metrics``, the SQLAlchemy
pools) reach a pool through the names below, plus its public API.  A surface
that subclasses a pool base may also override the hooks marked so.
``tests/test_layers.py`` fails when a surface module uses a private name of
the pool bases that is not declared here.

Asynchronous members are coroutines on the asyncio pools and plain methods on
the threaded ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["BORROW_PATH", "INTERFACE", "PoolInterface"]


class PoolInterface(Protocol):
    """The private names of a pool base that the surfaces may use (see the module docstring)."""

    #: the pool's driver (the ``Driver`` contract, and the driver's own documented attributes)
    _driver: Any
    #: the core's borrow path: ``connection``, ``getconn``, ``putconn``, ``lend``, ``take_back``,
    #: ``put``, ``release`` and ``release_block`` (see ``fastpool._core_pool``)
    _fast: Any
    #: the default deadline of an acquire, in seconds
    _acquire_timeout: float
    #: the pool's logger (a surface may set it as a class attribute)
    _log: logging.Logger
    #: ``close()`` waits for borrowed connections (a surface may set it as a class attribute)
    _close_waits: bool
    #: a psycopg connection's ``_pool`` is the pool while lent (a surface may set it)
    _lend_as_pool: bool

    #: the core's entry class: what ``_fast.get`` returns when it needs not wait (else an awaitable)
    _entry_cls: type[Any]
    #: the default deadline of a return's reset, in seconds
    _release_timeout: float
    #: the core module of the pool's build (a surface's own compiled path is loaded in the same
    #: build: ``_core_build.load_module(name, _core_build.build_of(pool._core_mod))``)
    _core_mod: Any
    #: a weak reference to the pool (what a surface's borrow path holds)
    _ref: Any

    def _get(self, timeout: float | None) -> Any:
        """Borrow a raw core entry (``entry.conn`` is the connection), within ``timeout``."""

    def _release(self, e: Any) -> Any:
        """Give an entry back through the reset and the hooks (asynchronous)."""

    def _discard(self, e: Any) -> None:
        """Close an entry's connection instead of giving it back; its slot is freed now."""

    def _discard_now(self, e: Any) -> Any:
        """The same, closing the connection before returning (asynchronous)."""

    def _orphaned(self, e: Any) -> None:
        """An entry's holder was garbage-collected: discard it in the background (for finalizers)."""

    def _open_dedicated(self) -> Any:
        """Open a connection outside ``max_size`` (asynchronous)."""

    def _close_dedicated(self, conn: Any) -> None:
        """Close a connection from ``_open_dedicated``, in the background."""

    def _phase(self, conn: Any, deadline: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)``, which does I/O on ``conn``, by ``deadline`` (asynchronous)."""

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the pool's background work after ``delay`` seconds."""

    def _alarm(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` (quick, no waiting) after ``delay`` seconds unless the returned
        handle's ``cancel()`` is called first."""

    def _connections(self) -> list[Any]:
        """Every open connection of the pool: idle, borrowed, or being reset."""

    def _terminate(self) -> None:
        """Close the pool at once, aborting every connection, borrowed ones too (no waiting)."""

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the background soon; safe from any thread and from finalizers."""

    def _on_close(self, surface: Any) -> None:
        """Stop ``surface`` with the pool: its ``_pool_closing()`` and ``_pool_closed()`` are called
        when the pool closes, its ``_pool_forked()`` in a forked child."""

    def _require_sessions(self, what: str, why: str) -> None:
        """Refuse ``what`` (``ValueError``) when the pool runs under transaction pooling."""

    def _observe(self, kind: str, fn: Callable[[float], Any]) -> None:
        """Call ``fn(seconds)`` at every hand-out (``"wait"``), return (``"use"``) or new
        connection (``"connect"``)."""

    def _count(self, counter: str, n: int = 1) -> None:
        """Add to one of the counters ``stats()`` reports."""

    def _gauge(self, name: str) -> int:
        """A gauge of the core now: ``size``, ``idle``, ``in_use``, ``connecting`` or ``waiting``."""

    def _take_idle(self) -> list[Any]:
        """Check out every idle entry (to give each back through ``_release``)."""

    def _close_doomed(self) -> None:
        """Close what the core dropped, and top up to ``min_size``."""

    def _ensure_started(self) -> None:
        """Start the pool's background work unless it runs (``PoolClosed`` once closed)."""

    def _closed_error(self) -> Exception:
        """The ``PoolClosed`` to raise on a pool that is not open."""

    def _owner(self) -> str:
        """The class the user called, as errors name it."""

    def _bind_fast(self) -> None:
        """Bind ``connection``/``getconn``/``putconn`` to the borrow path; a surface may override it."""


#: every name a surface may use of a pool (what ``tests/test_layers.py`` holds the surfaces to)
INTERFACE = frozenset(
    {*PoolInterface.__annotations__}
    | {name for name, value in vars(PoolInterface).items() if callable(value) and not name.startswith("__")}
)
#: what the core's borrow path is asked for (``_fast.<name>``)
BORROW_PATH = frozenset(
    {"connection", "getconn", "putconn", "lend", "take_back", "put", "release", "release_block", "unlent"}
)
