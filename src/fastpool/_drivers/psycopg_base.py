"""The psycopg 3 driver's I/O-free part, shared by its asyncio and threaded halves.

The halves are ``_psycopg_async.py`` (the source) and ``_psycopg.py``
(generated from it); this module has what needs no I/O, and the definition
of what they do:

Return-time reset (every recycling method): a broken or closed connection, or
one left ACTIVE or UNKNOWN (a query or COPY still running), is discarded;
one left in a transaction (INTRANS or INERROR) is rolled back.  An IDLE
connection gets no round trip at all: a gratuitous ROLLBACK would also clear
psycopg's prepared-statement cache.  Client-side settings changed during the
borrow (autocommit, isolation level, read only, deferrable, row and cursor
factories, prepare threshold, notice and notify handlers) are put back to what
the connection had when it joined the pool, without a round trip.  Then the
recycling method's SQL, if any (CLEAN, CUSTOM), runs in autocommit.

Acquire-time check: ``needs_check`` is I/O-free (connection status plus a
zero-timeout readability probe of the socket, which catches a backend that was
terminated while idle); ``check`` is an empty query in autocommit.

Server role (``target_session_attrs`` read-write, primary, read-only, standby):
libpq applies it only when connecting.  The server reports ``in_hot_standby``
and ``default_transaction_read_only`` (PostgreSQL 14+) at the first message
exchange after they change, so the driver reads them after the round trips
the pool makes anyway (``check``, the return-time reset) and at every return:
a connection whose server no longer matches is discarded, never handed out.
"""

from __future__ import annotations

import logging
import re
import typing
from typing import Any, ClassVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from .. import _core_build
from .._core_build import build_of, load_module
from ..recycle import Recycle
from .postgres import PostgresDriver, conninfo_secrets, endpoints, role_problem, scrub

__all__ = ["ASYNC_SETTERS", "PsycopgDriverBase", "changes", "forget_prepared"]

logger = logging.getLogger("fastpool")

_OK = pq.ConnStatus.OK
_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR

# Server answers that mean "try again shortly" although they come with FATAL.
_TRANSIENT_FATAL = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "too many clients already",
    "remaining connection slots are reserved",
    "sorry, too many clients",
)
_TRANSIENT_SQLSTATES = frozenset({"57P03", "53300", "08000", "08001", "08006"})


def changes(st: Any, conn: Any) -> list[tuple[str, Any]] | None:
    """Return the settings to put back, as (attribute, value), or None if none changed.

    Handlers are put back here directly; the connection is IDLE, so
    nothing of this goes to the server.
    """
    out: list[tuple[str, Any]] | None = None
    for name, now, then in (
        ("autocommit", conn._autocommit, st.autocommit),
        ("isolation_level", conn._isolation_level, st.isolation_level),
        ("read_only", conn._read_only, st.read_only),
        ("deferrable", conn._deferrable, st.deferrable),
        ("prepare_threshold", conn._prepared.prepare_threshold, st.prepare_threshold),
    ):
        if now != then:
            out = out or []
            out.append((name, then))
    if conn.row_factory is not st.row_factory:
        out = out or []
        out.append(("row_factory", st.row_factory))
    if conn.cursor_factory is not st.cursor_factory:
        out = out or []
        out.append(("cursor_factory", st.cursor_factory))
    if conn._notice_handlers != st.notice_handlers:
        conn._notice_handlers[:] = st.notice_handlers
    if conn._notify_handlers != st.notify_handlers:
        conn._notify_handlers[:] = st.notify_handlers
    return out


# settings that an AsyncConnection changes through an awaitable set_<name>()
ASYNC_SETTERS = frozenset({"autocommit", "isolation_level", "read_only", "deferrable"})


_CLEARS_PREPARED = re.compile(r"\b(?:DISCARD\s+ALL|DEALLOCATE\s+(?:PREPARE\s+)?ALL)\b", re.IGNORECASE)


def forget_prepared(conn: Any, sql: str) -> None:
    """After ``sql`` ran on ``conn``: if it dropped the server's prepared statements, make
    psycopg forget its own (its cache would name statements that no longer exist).

    psycopg 3.3.0-3.3.3 clear the cache only after DROP or ROLLBACK; later versions also
    after DISCARD, never after DEALLOCATE.  The cache is psycopg's private
    ``PrepareManager`` (``_names``, ``_counts``, ``_to_flush``), the same in every 3.3.
    """
    if not _CLEARS_PREPARED.search(sql):
        return
    pm = getattr(conn, "_prepared", None)
    if pm is None:
        return
    pm._counts.clear()
    pm._names.clear()
    pm._to_flush.clear()  # the server holds nothing now: no DEALLOCATE left to send


def _gates_module(mod: Any) -> Any:
    """The gates' module a driver is bound to, or the default build's."""
    return mod if mod is not None else load_module(f"{__package__}.psycopg_gates", build_of(_core_build.core))


class PsycopgDriverBase(PostgresDriver):
    """What the asyncio and threaded psycopg drivers share: no I/O here (internal).

    ``close_returns`` and ``putconn`` make the driver the object psycopg finds
    in ``conn._pool``: ``with conn:`` inside a borrow then commits without
    closing, as with psycopg_pool.
    """

    has_needs_check = True
    has_reset = True
    has_finish = True
    ready_gate = True  # needs_check is the socket probe: the borrow path runs it inline (the gates' ready)
    connection_base: ClassVar[type[Any]] = psycopg.Connection  # what connection_class must derive from
    connect_error_class = psycopg.OperationalError

    def __init__(
        self,
        conninfo: Any = "",
        kwargs: Any = None,
        connection_class: Any = psycopg.Connection,
        recycle: Recycle = Recycle.FAST,
        default_connect_timeout: float | None = None,
        *,
        transaction_pooling: bool = False,
    ) -> None:
        super().__init__(conninfo, kwargs, recycle, transaction_pooling)
        base = self.connection_base
        cls = typing.get_origin(connection_class) or connection_class  # MyConnection[MyRow] too
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"connection_class must be {base.__module__}.{base.__qualname__} or a subclass, "
                f"got {connection_class!r}"
            )
        self._epoch = 0  # bumped by clear_prepared()
        self._gates_mod: Any = None  # the gates' module, in the build of the core the pool uses
        self.gates: Any = None
        self.close_returns = False
        self.log = logger  # the pool's logger (the psycopg_pool surface logs where psycopg_pool did)
        self._default_connect_timeout = default_connect_timeout
        self.connection_class: Any = connection_class
        if not self.dynamic:
            self.conninfo, self.kwargs = self.resolve(conninfo, kwargs)
        else:
            self.conninfo, self.kwargs = "", {}
            if not callable(conninfo):
                self.resolve(conninfo, {})  # checked now, and its password learnt
            self._target = "the servers the conninfo function names"

    def resolve(self, conninfo: Any, kwargs: Any) -> tuple[str, dict[str, Any]]:
        """Check connection parameters; return what ``connect`` passes to psycopg.

        Learns their password (for scrubbing), the server role they target and the
        servers they name (for messages).  ``TypeError``/``ValueError`` name the problem.
        """
        self.check_returned(conninfo, kwargs)
        kwargs = dict(kwargs or {})
        if self.transaction_pooling:  # a prepared statement lives in one server session, which is not ours
            kwargs["prepare_threshold"] = None
        secrets = conninfo_secrets(conninfo, kwargs)
        error = None
        try:
            params = conninfo_to_dict(conninfo, **kwargs)
        except psycopg.ProgrammingError as exc:
            error = f"conninfo: {scrub(str(exc), [*secrets, *self._secrets])}"
        if error is not None:  # raised out of the except block: libpq's text is not even the context
            raise ValueError(error)
        self.learn(secrets, params)
        timeout = self._default_connect_timeout
        if timeout is not None and "connect_timeout" not in params:
            kwargs["connect_timeout"] = max(2, int(timeout + 0.999))
        return conninfo, kwargs

    # -- shared, I/O-free -------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The prepared statements' epoch: bumped by ``clear_prepared()``; a connection of an older
        epoch is deallocated at its return."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = value
        if self.gates is not None:
            self.gates.epoch = value

    def make_gates(self, core_mod: Any) -> Any:
        gates_mod = load_module(f"{__package__}.psycopg_gates", build_of(core_mod))
        self._gates_mod = gates_mod
        self.gates = gates_mod.PsycopgGates(self._epoch)
        return self.gates

    def snapshot(self, conn: Any) -> Any:
        if self._gates_mod is None:  # not bound to a pool's core yet: the default build's gates
            self.make_gates(_core_build.core)
        return self._gates_mod.ClientState(conn, self._epoch, self._role)

    def needs_check(self, entry: Any, now: float) -> bool:
        return self._probe(entry)

    def _probe(self, entry: Any) -> bool:
        pgconn = entry.conn.pgconn
        if pgconn.status != _OK:
            return True
        try:
            return bool(_core_build.core.readable(pgconn.socket))
        except (OSError, ValueError, psycopg.OperationalError):
            return True

    def socket_fd(self, conn: Any) -> int:
        return int(conn.pgconn.socket)

    def idle_dead(self, entry: Any) -> bool:
        # An idle connection has nothing to read unless the server spoke first:
        # a FATAL before EOF (terminated backend, restart) or a stray NOTIFY /
        # NOTICE, which would leak to the next borrower anyway.
        return self._probe(entry)

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError):
            return True
        if not isinstance(exc, psycopg.OperationalError):
            return False
        if getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        msg = str(exc)
        if "connection is bad" in msg and "invalid" in msg:  # libpq refused an option's value
            return False
        if "FATAL:" not in msg:  # refused, reset, timed out, no route: try again
            return True
        return any(s in msg for s in _TRANSIENT_FATAL)

    def hook_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, (psycopg.OperationalError, OSError))

    def _begin_reset(self, entry: Any) -> int:
        """Classify a returned connection: 0 close it (broken, or mid-query), 1 it is idle, 2 roll it back."""
        pgconn = entry.conn.pgconn
        if pgconn.status != _OK:
            return 0
        ts = pgconn.transaction_status
        if ts == _IDLE:
            return 1
        if ts in (_INTRANS, _INERROR):
            return 2
        return 0  # ACTIVE or UNKNOWN: the state is unknown, never reuse it

    def _needs_deallocate(self, st: Any) -> bool:
        if self.transaction_pooling:  # nothing is prepared, and no session would keep it
            return False
        if st is not None and st.epoch != self.epoch:  # clear_prepared() was called since
            st.epoch = self.epoch
            return True
        return False

    def _drop_backlog(self, conn: Any) -> None:
        if self._clean:  # UNLISTEN * does not drop what psycopg already received
            backlog = conn._notifies_backlog
            if backlog:
                backlog.clear()

    def role_error(self, conn: Any) -> psycopg.OperationalError | None:
        """The error to close ``conn`` with if its server no longer matches ``target_session_attrs``."""
        target = self.target_session_attrs
        pgconn = conn.pgconn
        if target is None or _gates_module(self._gates_mod).role_ok(pgconn, self._role):
            return None
        where = endpoints({"host": pgconn.host.decode(), "port": pgconn.port.decode()})
        hot = pgconn.parameter_status(b"in_hot_standby") == b"on"
        return psycopg.OperationalError(
            f"{where}: the server is now {role_problem(hot, target)}; "
            f"the pool wants target_session_attrs={target}"
        )

    def reset_now(self, entry: Any) -> int:
        """The I/O-free part of the reset: 0 discard, 1 done, 2 the reset (with I/O) must run."""
        action = self._begin_reset(entry)
        if action != 1:  # broken, closed, mid-query or in a transaction: reset() says what it does
            return 2
        if self.target_session_attrs is not None and self.role_changed(entry.conn):
            return 0
        st = entry.data
        if st is not None and (not st.same(entry.conn) or st.epoch != self.epoch):
            return 2
        return 1 if self._recycle_sql is None else 2

    def finish_action(self, conn: Any, ok: bool) -> int:
        """What the end of ``connection()`` must do: 0 nothing, 1 commit, 2 roll back."""
        pgconn = conn.pgconn
        if pgconn.status != _OK:
            return 0
        ts = pgconn.transaction_status
        if ts == _INTRANS and ok:
            return 1
        if ts in (_INTRANS, _INERROR):
            return 2
        return 0
