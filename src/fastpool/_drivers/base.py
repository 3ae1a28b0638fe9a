"""The driver contract: everything a pool asks of a kind of connection.

A pool never touches a connection itself: it calls its driver, an object
that implements :class:`Driver`.  The calls fall in four groups.

**I/O** (coroutines in the drivers of the asyncio pools, plain functions in
the threaded ones): :meth:`Driver.connect`, :meth:`Driver.check`,
:meth:`Driver.reset`, :meth:`Driver.finish` and :meth:`Driver.close`.  The
pool bounds each by a deadline; past it, it calls :meth:`Driver.interrupt`.

**No I/O, off the borrow path**: :meth:`Driver.snapshot` (the driver's own
record of a new connection, kept as ``entry.data``), :meth:`Driver.needs_check`
and :meth:`Driver.idle_dead` (cheap tests before a hand-out and on idle
connections), :meth:`Driver.reset_now` and :meth:`Driver.finish_action` (what a
return needs), :meth:`Driver.forget` (after a fork).

**No I/O, on the borrow path**: :meth:`Driver.make_gates` returns the
driver's :class:`~fastpool._core_pool.Gates`, which the core's borrow path
calls for every hand-out from idle (``ready``) and every return
(``returnable``) when the class flags ``ready_gate`` and ``return_gate`` say
so.  They are written once for both builds of the core, compiled like it when
they are on the hot path.

**Errors and secrets**: :meth:`Driver.retryable`, :meth:`Driver.hook_retryable`,
:meth:`Driver.connect_error`, :meth:`Driver.safe_error`, :meth:`Driver.describe`
and :meth:`Driver.redact`.  A driver that knows a password keeps it out of
every text it gives the pool.

``entry`` arguments are the core's records (:class:`~fastpool._core_pool.Entry`:
``conn``, ``created_at``, ``last_used``, ``expires_at``, ``data``...).  The
base class implements each call as the simplest correct behaviour (nothing to
reset, nothing to check, every error permanent but ``OSError``); a driver
overrides what its connections need.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

__all__ = ["Driver"]


class Driver:
    """The contract between a pool and a kind of connection (see the module docstring).

    Class flags let the pools leave calls that would do nothing off their
    paths: ``has_needs_check`` (``needs_check`` may say yes), ``has_reset``
    (``reset_now``/``reset`` do something), ``has_finish`` (``finish`` may
    commit or roll back), ``ready_gate`` and ``return_gate`` (the gates of
    ``make_gates`` decide hand-outs and returns on the borrow path).
    """

    has_needs_check: ClassVar[bool] = True
    has_reset: ClassVar[bool] = False
    has_finish: ClassVar[bool] = False
    #: the gates' ``ready`` is ``needs_check`` (inverted): the borrow path runs it inline
    ready_gate: bool = False
    #: the gates' ``returnable`` says when a return needs no ``reset``: the borrow path runs it inline
    return_gate: bool = False
    #: ``check`` at every hand-out from idle (``Recycle.VERIFIED``)
    always_check: bool = False
    #: the server keeps no session between transactions (PgBouncer's transaction mode)
    transaction_pooling: bool = False
    #: a weak reference to the pool using this driver, set by the pool
    pool: Any = None
    #: where the driver logs: its pool's logger, set by the pool
    log: logging.Logger = logging.getLogger("fastpool")
    #: the level of "rolling back returned connection": INFO where rolling back an open
    #: transaction at return is the documented contract (fastpool's own pools), WARNING where
    #: the surface copies a library that warns (psycopg_pool's); set by the pool
    rollback_level: int = logging.INFO
    #: what fastpool's session features (leadership, the sandbox) run on this driver's connections
    #: (``value``, ``run``, ``idle``, ``status``, ``begin_sandbox``...; see the PostgreSQL drivers),
    #: or None when its connections are not PostgreSQL sessions
    session: Any = None

    # -- I/O (awaitable in the drivers of the asyncio pools) -------------------------------

    def connect(self) -> Any:
        """Open and return a new connection; raise on failure (see :meth:`retryable`)."""
        raise NotImplementedError

    def close(self, conn: Any) -> Any:
        """Close ``conn``; never raises."""
        raise NotImplementedError

    def check(self, conn: Any) -> Any:
        """The expensive health check (a round trip); raise to have the connection closed."""

    def reset(self, entry: Any) -> Any:
        """Make a returned connection reusable (when :meth:`reset_now` says 2).

        Return False, or raise, to have it closed instead.
        """
        return True

    def finish(self, conn: Any, ok: bool) -> Any:
        """End a ``pool.connection()`` block: commit if ``ok``, else roll back (see :meth:`finish_action`)."""

    def interrupt(self, conn: Any) -> bool:
        """Make I/O in progress on ``conn`` fail at once (its deadline passed); never blocks.

        Called from a timer thread or a loop callback while another thread or task may be
        using ``conn``, which is closed afterwards and never reused.  Return False when this
        kind of connection cannot be interrupted (the pool then cancels the task doing the I/O).
        """
        return False

    def abort(self, conn: Any) -> None:
        """Close ``conn`` at once, sending nothing that could wait (a pool's ``terminate()``).

        The base shuts its I/O down (:meth:`interrupt`); a driver whose connections can be
        aborted outright does that.  Never raises.
        """
        self.interrupt(conn)

    # -- no I/O, off the borrow path ---------------------------------------------------------

    def snapshot(self, conn: Any) -> Any:
        """Return the driver's record of a new connection (kept as ``entry.data``)."""
        return None

    def needs_check(self, entry: Any, now: float) -> bool:
        """Cheap and without I/O: must :meth:`check` run before ``entry.conn`` is handed out?"""
        return False

    def idle_dead(self, entry: Any) -> bool:
        """Cheap and without I/O, asked by the reaper of idle connections: is ``entry.conn`` unusable?"""
        return False

    def reset_now(self, entry: Any) -> int:
        """The I/O-free part of a return: 0 close it, 1 nothing to reset, 2 :meth:`reset` must run."""
        return 2

    def finish_action(self, conn: Any, ok: bool) -> int:
        """What ending ``pool.connection()`` needs: 0 nothing, 1 commit, 2 roll back."""
        return 0

    def forget(self, conn: Any) -> None:
        """In a forked child: let go of an inherited connection without touching the server.

        The parent keeps using the connection; the child must send nothing on it.
        """

    # -- no I/O, on the borrow path ------------------------------------------------------------

    def make_gates(self, core_mod: Any) -> Any:
        """Return the gates the borrow path calls, from the core module ``core_mod``'s build.

        The base returns the core's generic :class:`~fastpool._core_pool.Gates`
        (hand out anything, take back anything unexpired).  Called when the pool
        builds its core, and again in a forked child.
        """
        return core_mod.Gates()

    # -- errors and secrets ----------------------------------------------------------------------

    def retryable(self, exc: BaseException) -> bool:
        """Is a failed connect worth retrying (with backoff, within the callers' deadlines)?

        False fails every queued caller at once (a wrong password, a missing database).
        """
        return isinstance(exc, OSError)

    def hook_retryable(self, exc: BaseException) -> bool:
        """Is a failure of ``after_connect`` worth another connect?"""
        return isinstance(exc, OSError)

    def connect_error(self, exc: BaseException) -> BaseException:
        """The error a caller gets for a failed connect not worth retrying (a new object)."""
        return exc

    def safe_error(self, exc: BaseException | None) -> BaseException | None:
        """``exc``, or a copy of it with no secret in its text, to chain as a cause."""
        return exc

    def describe(self) -> str:
        """Where connections go, for messages (``host:port``; never a password)."""
        return "resource"

    def redact(self, text: str) -> str:
        """``text`` with every secret the driver knows removed, before it is logged or raised."""
        return text
