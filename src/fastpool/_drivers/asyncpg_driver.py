"""The asyncpg driver of the asyncio pools: opening, checking, resetting, closing asyncpg connections.

asyncpg has no threaded API: this driver is asyncio's only, and written by
hand (it has no generated counterpart).  asyncpg is imported when a pool
first uses this driver (``pip install 'fastpool[asyncpg]'``).

Connection parameters: a ``postgresql://`` URL is asyncpg's own DSN; a libpq
``key=value`` conninfo is translated (``dbname`` is asyncpg's ``database``,
``connect_timeout`` its ``timeout``, ``application_name`` and ``options`` go
to the server as ``server_settings``, the SSL files and ``target_session_attrs``
as DSN parameters); either may be a function, plain or coroutine, called for
each new connection.  ``kwargs`` go to :func:`asyncpg.connect`
(``statement_cache_size``, ``server_settings``, ``ssl``, ``connection_class``,
``record_class``...).

Return-time reset (every recycling method): a closed connection, one with an
operation or a cancellation in progress (returned mid-query or mid-COPY), or
one whose server left the wanted role is discarded.  An open transaction is
rolled back.  What asyncpg tracks on the client is put back as it was when
the connection joined the pool: listeners (``add_listener``, undone on the
server with ``UNLISTEN``), log and termination listeners, query loggers.  A
connection nothing of this applies to gets no round trip at all.  Then the
recycling method's SQL, if any: CLEAN is asyncpg's own reset query
(``Connection.get_reset_query()``: advisory unlock all, ``CLOSE ALL``,
``UNLISTEN *``, ``RESET ALL``) in one round trip, after which the listeners
the connection joined the pool with listen again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from psycopg.conninfo import conninfo_to_dict

from .. import _core_build
from .._core_build import build_of, load_module
from ..recycle import Recycle
from .postgres import PostgresDriver, conninfo_secrets, endpoints, role_problem, scrub

__all__ = ["AsyncpgDriver", "AsyncpgSession", "translate_conninfo"]

logger = logging.getLogger("fastpool")

#: libpq keywords and what asyncpg.connect() calls them
_AS_KWARGS = {
    **{
        k: k for k in ("host", "port", "user", "password", "passfile", "service", "servicefile", "krbsrvname")
    },
    **{k: k for k in ("gsslib", "target_session_attrs")},
    "dbname": "database",
    "sslmode": "ssl",
}
#: libpq keywords asyncpg reads only from a DSN's query string
_AS_DSN = ("sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "ssl_min_protocol_version",
           "ssl_max_protocol_version", "sslnegotiation")  # fmt: skip
#: libpq keywords that the server takes as startup parameters
_AS_SERVER_SETTINGS = ("application_name", "options", "client_encoding")
# sqlstates of a failed connect worth retrying: starting up / shutting down, too many clients,
# connection failures
_TRANSIENT = frozenset({"57P01", "57P02", "57P03", "53300", "08000", "08001", "08003", "08004", "08006"})
_ROLLBACK = "ROLLBACK"


def translate_conninfo(conninfo: str) -> tuple[str | None, dict[str, Any]]:
    """A conninfo as asyncpg takes it: ``(dsn, connect keyword arguments)``.

    A URL is asyncpg's DSN as it is; a libpq ``key=value`` string is parsed and
    translated (see the module docstring).  ``ValueError`` names a keyword asyncpg
    has no equivalent for.
    """
    text = conninfo.strip()
    if not text or "://" in text.split("=", 1)[0]:
        return (text or None), {}
    params = conninfo_to_dict(text)
    kwargs: dict[str, Any] = {}
    dsn_params: dict[str, str] = {}
    settings: dict[str, str] = {}
    for key, value in params.items():
        if key in _AS_KWARGS:
            kwargs[_AS_KWARGS[key]] = value
        elif key in _AS_DSN:
            dsn_params[key] = str(value)
        elif key in _AS_SERVER_SETTINGS:
            settings[key] = str(value)
        elif key == "connect_timeout":
            kwargs["timeout"] = max(1.0, float(str(value)))
        else:
            raise ValueError(f"conninfo: asyncpg has no equivalent of the libpq keyword {key!r}")
    if "host" in kwargs and "," in str(kwargs["host"]):
        kwargs["host"] = str(kwargs["host"]).split(",")
    if "port" in kwargs:
        ports = [int(p) for p in str(kwargs["port"]).split(",") if p]
        kwargs["port"] = ports if len(ports) > 1 else ports[0]
    if settings:
        kwargs["server_settings"] = settings
    dsn = f"postgresql://?{urlencode(dsn_params)}" if dsn_params else None
    return dsn, kwargs


def _url_params(dsn: str) -> dict[str, Any]:
    """What a ``postgresql://`` URL says of its servers and role (for messages and checks)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    hosts, ports = [], []
    for hp in filter(None, netloc.split(",")):
        host, _, port = hp.rpartition(":") if not hp.endswith("]") else (hp, "", "")
        hosts.append(unquote(host or hp))
        ports.append(port)
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    out: dict[str, Any] = {"host": ",".join(hosts) or query.get("host", "")}
    out["port"] = ",".join(p or "5432" for p in ports) or query.get("port", "5432")
    if query.get("target_session_attrs"):
        out["target_session_attrs"] = unquote(query["target_session_attrs"])
    if query.get("password"):
        out["password"] = unquote(query["password"])
    return out


class AsyncpgDriver(PostgresDriver):
    """Opens asyncpg connections for the asyncio pools (internal; see the module docstring)."""

    has_needs_check = True
    has_reset = True
    has_finish = False  # asyncpg has no implicit transaction: a block leaves none to commit
    ready_gate = True  # needs_check is the socket probe: the borrow path runs it inline (the gates' ready)
    connect_error_class = ConnectionError  # (an OSError: a conninfo function that raised is retried)

    def __init__(
        self,
        conninfo: Any = "",
        kwargs: Any = None,
        recycle: Recycle = Recycle.FAST,
        default_connect_timeout: float | None = None,
        *,
        transaction_pooling: bool = False,
    ) -> None:
        import asyncpg  # noqa: PLC0415  (the extra: imported when this driver is first used)

        super().__init__(conninfo, kwargs, recycle, transaction_pooling)
        self._asyncpg = asyncpg
        self._errors = asyncpg.exceptions
        self._connect_timeout = default_connect_timeout
        self._gates_mod: Any = None
        self.gates: Any = None
        self._epoch = 0  # bumped by clear_prepared()
        self.dsn: str | None = None
        self.kwargs: dict[str, Any] = {}
        if not self.dynamic:
            self.dsn, self.kwargs = self.resolve(conninfo, kwargs)
        else:
            if not callable(conninfo):
                self.resolve(conninfo, {})  # checked now, and its password learnt
            self._target = "the servers the conninfo function names"

    def resolve(self, conninfo: Any, kwargs: Any) -> tuple[str | None, dict[str, Any]]:
        """Check connection parameters; return asyncpg's ``(dsn, kwargs)``.

        Learns their password (for scrubbing), the role they target and the servers
        they name (for messages).  ``TypeError``/``ValueError`` name the problem.
        """
        self.check_returned(conninfo, kwargs)
        given = dict(kwargs or {})
        secrets = conninfo_secrets(conninfo, given)
        error: str | None = None
        try:
            dsn, args = translate_conninfo(conninfo)
        except Exception as exc:
            error = f"conninfo: {scrub(str(exc), [*secrets, *self._secrets])}"
        if error is not None:  # raised out of the except block: the text with the password is not the context
            raise ValueError(error)
        args.update(given)
        if isinstance(args.get("server_settings"), Mapping) and "server_settings" in given:
            merged = dict(translate_conninfo(conninfo)[1].get("server_settings") or {})
            merged.update(given["server_settings"])
            args["server_settings"] = merged
        if self.transaction_pooling:  # a prepared statement lives in one server session, which is not ours
            args["statement_cache_size"] = 0
        if self._connect_timeout is not None:
            args.setdefault("timeout", self._connect_timeout)
        params: dict[str, Any] = _url_params(dsn) if dsn and dsn.startswith(("postgres", "pg")) else {}
        for key in ("host", "port", "password", "target_session_attrs"):
            if key in args and args[key] is not None:
                value = args[key]
                params[key] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        self.learn(secrets, params)
        return dsn, args

    # -- I/O -----------------------------------------------------------------------------------------

    async def connect(self) -> Any:
        if self.dynamic:
            dsn, kwargs = await self._params_async()
        else:
            dsn, kwargs = self.dsn, self.kwargs
        return await self._asyncpg.connect(dsn, **kwargs)

    async def close(self, conn: Any) -> None:
        try:
            await conn.close(timeout=5.0)
        except (Exception, asyncio.CancelledError) as exc:  # pragma: no cover - close is best effort
            logger.debug("error closing a connection: %s", self.redact(str(exc)))
            conn.terminate()
            if isinstance(exc, asyncio.CancelledError):
                raise

    def abort(self, conn: Any) -> None:
        conn.terminate()

    async def check(self, conn: Any) -> None:
        await conn.execute("SELECT 1")
        err = self.role_error(conn)  # what the server reported in this round trip
        if err is not None:
            raise err

    async def reset(self, entry: Any) -> bool:
        conn = entry.conn
        st = entry.data
        if not self._usable(entry):
            if not conn.is_closed():
                self.log.warning("closing returned connection: an operation was in progress: %s", conn)
                conn.terminate()
            return False
        if conn._protocol.is_in_transaction() or conn._top_xact is not None:
            # returned in a transaction: a bug in the borrower, worth a warning
            self.log.log(self.rollback_level, "rolling back returned connection: %s", conn)
            conn._top_xact = None
            await conn.execute(_ROLLBACK)
        if st is not None:
            await self._restore(conn, st)
            if st.epoch != self._epoch:  # clear_prepared() was called since
                conn._drop_local_statement_cache()
                st.epoch = self._epoch
        sql = self._recycle_sql
        if sql is not None:
            await conn.execute(conn.get_reset_query() if self._clean else sql)
            if self._clean and st is not None and st.listeners0:  # UNLISTEN * dropped the pool's own too
                await conn.execute(";".join(f"LISTEN {_ident(ch)}" for ch in st.listeners0))
        return self.target_session_attrs is None or not self.role_changed(conn)

    async def _restore(self, conn: Any, st: Any) -> None:
        """Put back what asyncpg tracks on the client as the connection had it when it joined."""
        listeners, then = conn._listeners, st.listeners0
        if listeners != then:  # the server listens to what the client has callbacks for
            stmts = [f"UNLISTEN {_ident(ch)}" for ch in listeners if ch not in then]
            stmts += [f"LISTEN {_ident(ch)}" for ch in then if ch not in listeners]
            listeners.clear()
            listeners.update({ch: set(cbs) for ch, cbs in then.items()})
            if stmts:
                await conn.execute(";".join(stmts))
        for attr, was in (
            ("_log_listeners", st.log_listeners0),
            ("_termination_listeners", st.termination_listeners0),
            ("_query_loggers", st.query_loggers0),
        ):
            now = getattr(conn, attr)
            if now != was:
                now.clear()
                now.update(was)

    # -- no I/O ----------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The statement caches' epoch: bumped by ``clear_prepared()``; a connection of an older
        epoch has its statement cache dropped at its return."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = value
        if self.gates is not None:
            self.gates.epoch = value

    @property
    def session(self) -> AsyncpgSession:
        """What the session features (leadership, the sandbox) run on this driver's connections."""
        return _SESSION

    def make_gates(self, core_mod: Any) -> Any:
        gates_mod = load_module(f"{__package__}.asyncpg_gates", build_of(core_mod))
        self._gates_mod = gates_mod
        self.gates = gates_mod.AsyncpgGates(self._epoch, _access(self._asyncpg))
        return self.gates

    def _gates(self) -> Any:
        if self._gates_mod is None:  # not bound to a pool's core yet: the default build's gates
            self.make_gates(_core_build.core)
        return self._gates_mod

    def snapshot(self, conn: Any) -> Any:
        return self._gates().AsyncpgState(conn, self.socket_fd(conn), self._role, self._epoch)

    def socket_fd(self, conn: Any) -> int:
        return int(conn._transport.get_extra_info("socket").fileno())

    def _usable(self, entry: Any) -> bool:
        st = entry.data
        if self.gates is None:
            self.make_gates(_core_build.core)
        return st is not None and bool(self.gates.idle(st))

    def needs_check(self, entry: Any, now: float) -> bool:
        return self.idle_dead(entry)

    def idle_dead(self, entry: Any) -> bool:
        # An idle connection has nothing to read unless the server spoke first: a FATAL before
        # EOF (terminated backend, restart) or a stray notice, which would reach the next borrower.
        if not self._usable(entry):
            return True
        try:
            return bool(_core_build.core.readable(entry.data.fd))
        except OSError:
            return True

    def reset_now(self, entry: Any) -> int:
        """The I/O-free part of the reset: 0 discard, 1 done, 2 the reset (with I/O) must run."""
        if not self._usable(entry):
            return 2  # reset() closes it, saying why
        conn = entry.conn
        if self.target_session_attrs is not None and self.role_changed(conn):
            return 0
        st = entry.data
        if conn._protocol.is_in_transaction() or not st.same() or st.epoch != self._epoch:
            return 2
        return 1 if self._recycle_sql is None else 2

    def role_error(self, conn: Any) -> Exception | None:
        """The error to close ``conn`` with if its server no longer matches ``target_session_attrs``."""
        target = self.target_session_attrs
        settings = conn._protocol.get_settings()
        if target is None or self._gates().role_ok(settings, self._role):
            return None
        addr = conn._addr
        where = endpoints({"host": addr[0], "port": addr[1]}) if isinstance(addr, tuple) else str(addr)
        hot = getattr(settings, "in_hot_standby", None) == "on"
        err: Exception = self._errors.InterfaceError(
            f"{where}: the server is now {role_problem(hot, target)}; "
            f"the pool wants target_session_attrs={target}"
        )
        return err

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, (OSError, asyncio.TimeoutError)):
            return True
        errors = self._errors
        if isinstance(exc, errors.PostgresError):
            return getattr(exc, "sqlstate", None) in _TRANSIENT
        if isinstance(exc, errors.InterfaceError) and not isinstance(exc, errors.ClientConfigurationError):
            return "connection" in str(exc).lower() and "closed" in str(exc).lower()
        return False

    def hook_retryable(self, exc: BaseException) -> bool:
        errors = self._errors
        return isinstance(exc, (OSError, asyncio.TimeoutError, errors.PostgresConnectionError)) or (
            isinstance(exc, errors.InterfaceError) and "closed" in str(exc)
        )


def _access(asyncpg: Any) -> tuple[Any, ...]:
    """What the gates read asyncpg's objects with (see ``AsyncpgGates``), found in its classes."""
    from asyncpg.connection import _Atomic  # noqa: PLC0415
    from asyncpg.protocol import Protocol  # noqa: PLC0415

    slots = asyncpg.connection.Connection.__dict__
    return (
        slots["_aborted"],
        slots["_protocol"],
        slots["_top_xact"],
        _Atomic.__dict__["_acquired"],
        Protocol.is_connected,
        Protocol._is_cancelling,
        Protocol.is_in_transaction,
        next(k.__dict__["queries_count"] for k in Protocol.__mro__ if "queries_count" in k.__dict__),
    )


class AsyncpgSession:
    """What fastpool's session features (leadership, the sandbox) do on an asyncpg connection.

    SQL is written with ``%s`` placeholders (psycopg's); they become ``$1``, ``$2``... here.
    asyncpg has no implicit transaction: every statement outside one commits on its own.
    """

    __slots__ = ()

    async def value(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row of ``sql`` (None when no row), in one round trip."""
        return await conn.fetchval(_numbered(sql), *params)

    async def run(self, conn: Any, sql: str) -> None:
        """Run ``sql`` (one or more statements, simple protocol)."""
        await conn.execute(sql)

    def idle(self, conn: Any) -> bool:
        """True when no transaction is open on ``conn``."""
        return not conn._protocol.is_in_transaction() and conn._top_xact is None

    def gone(self, conn: Any) -> bool:
        """True when ``conn`` is closed."""
        return bool(conn.is_closed())

    async def rollback(self, conn: Any) -> None:
        """Roll back the open transaction."""
        conn._top_xact = None
        await conn.execute(_ROLLBACK)

    async def autocommit(self, conn: Any) -> None:
        """Nothing to do: asyncpg commits every statement outside a transaction."""

    def backend_pid(self, conn: Any) -> int:
        """The server process of ``conn``."""
        return int(conn.get_server_pid())

    def status(self, conn: Any) -> str:
        """``"idle"`` or ``"intrans"`` (asyncpg does not tell a failed transaction apart)."""
        return "intrans" if conn._protocol.is_in_transaction() else "idle"

    async def begin_sandbox(self, conn: Any, isolation: str | None) -> None:
        """Open the sandbox transaction as asyncpg's top transaction: the code under test's
        ``conn.transaction()`` blocks nest in it as savepoints."""
        tr = conn.transaction(isolation=isolation.lower() if isolation else None)
        await tr.start()

    async def end_sandbox(self, conn: Any) -> None:
        """Roll the sandbox transaction back and drop the advisory locks taken in it."""
        conn._top_xact = None
        await conn.execute("ROLLBACK; SELECT pg_advisory_unlock_all()")


_SESSION = AsyncpgSession()


def _numbered(sql: str) -> str:
    """``sql`` with its ``%s`` placeholders numbered as asyncpg's (``$1``, ``$2``...)."""
    parts = sql.split("%s")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def _ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
