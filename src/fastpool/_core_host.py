"""What the core's borrow paths call back on their pool: the declared host interface.

The borrow paths (``FastPath``, ``AsyncFastPath`` in ``_core_pool``) do a
borrow and a return themselves in the common case and hand everything else
to the pool that built them, which they hold weakly.  This module declares
those calls; it is for readers and type checkers only (the compiled core
calls them by name).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["PoolHost"]


class PoolHost(Protocol):
    """The pool methods the borrow paths call (coroutines on asyncio pools where marked)."""

    def _get(self, timeout: float | None) -> Any:
        """Borrow an entry on a pool not yet started on this loop (starts it; asynchronous)."""

    def _get_slow(self, start: float, timeout: float | None) -> Any:
        """Queue for an entry: nothing idle could be handed out (asynchronous)."""

    def _admit(self, e: Any, now: float, timeout: float | None) -> Any:
        """Threads: run the acquire-time checks and hooks on ``e``; True when it may be handed out."""

    def _admit_or_slow(self, e: Any, now: float, timeout: float | None) -> Any:
        """asyncio: admit ``e`` as ``_admit`` does, or queue for another (a coroutine giving an entry)."""

    def _release_block(self, e: Any, ok: bool) -> Any:
        """End a ``connection()`` block that the gates could not settle: commit or roll back, reset."""

    def _release(self, e: Any) -> Any:
        """Give back an entry that the gates could not settle: reset, hooks (asynchronous)."""

    def _close_doomed(self) -> None:
        """Close what the core dropped (expired, drained) and top up to ``min_size``."""

    def _not_lent(self, conn: Any) -> Any:
        """``putconn`` of a connection this pool did not lend: raise ``WrongPoolError``."""
