"""Sandbox: each test in its own transaction, rolled back at the end (seed 001, SPEC §2.5-2.6).

``Sandbox(pool)`` is an :class:`~fastpool.Ownership` in MANUAL mode whose
checkout runs ``BEGIN`` and whose checkin runs ``ROLLBACK`` plus
``pg_advisory_unlock_all()``; every borrow through ``connection()`` is a
savepoint (released on success, rolled back to on an exception), so one
failed statement does not poison the rest of the test.  Point the code under
test at the Sandbox instead of the pool: both have ``connection()``.

For an app under test that serves HTTP from other threads or tasks,
:func:`wsgi_middleware` / :func:`asgi_middleware` let a request join a test's
sandbox when it carries the test's opaque token (``owner.token()``) in a
header.  The token is a random string looked up in the Sandbox's own table;
no client data is ever deserialised.

Consequences of running a test inside one transaction: sequences are not
rolled back; ``now()`` is frozen for the whole test (use ``clock_timestamp()``);
deferred constraints are never checked (``SET CONSTRAINTS ALL IMMEDIATE``);
``CREATE INDEX CONCURRENTLY``, ``VACUUM`` and ``autocommit`` need
:meth:`Sandbox.unboxed_run`, whose changes persist; concurrent tests touching
the same unique values can block or deadlock each other (use unique data).
"""

from __future__ import annotations

import secrets
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus

from .errors import SandboxError
from .ownership import (
    _DEFAULT,
    AsyncOwnership,
    Mode,
    OwnerHandle,
    Ownership,
    Status,
    _check_identity,
    _Checkout,
    _maybe_await,
    _StartOwner,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncSandbox", "Sandbox", "asgi_middleware", "wsgi_middleware"]

_IDLE = TransactionStatus.IDLE
_INTRANS = TransactionStatus.INTRANS
_INERROR = TransactionStatus.INERROR
_CHECKIN_SQL = b"ROLLBACK; SELECT pg_advisory_unlock_all()"  # one round trip, simple protocol
_SAVEPOINT = b"SAVEPOINT fastpool_borrow"
_RELEASE = b"RELEASE SAVEPOINT fastpool_borrow"
_ROLLBACK_TO = b"ROLLBACK TO SAVEPOINT fastpool_borrow; RELEASE SAVEPOINT fastpool_borrow"
_COMMITTED = (
    "sandbox transaction was already committed/rolled back: the code under test ran a raw COMMIT "
    "or ROLLBACK, so its changes escaped the sandbox.  Use unboxed_run() for work that must commit"
)


def _isolation(value: Any) -> IsolationLevel | None:
    if value is None or isinstance(value, IsolationLevel):
        return value
    if isinstance(value, str):
        try:
            return IsolationLevel[value.strip().upper().replace(" ", "_")]
        except KeyError:
            pass
    raise ValueError(f"isolation must be None, a psycopg.IsolationLevel or one of "
                     f"{[m.name.lower() for m in IsolationLevel]}, got {value!r}")  # fmt: skip


class _Boxed:
    """Per-checkout sandbox options."""

    __slots__ = ("boxed", "isolation")

    def __init__(self, boxed: bool, isolation: IsolationLevel | None) -> None:
        self.boxed = boxed
        self.isolation = isolation


def _begin_check(conn: Any) -> None:
    status = conn.info.transaction_status
    if status != _IDLE:
        raise SandboxError(f"cannot start sandbox transaction: a transaction is already running "
                           f"on the connection (status {status.name})")  # fmt: skip


def _checkin_action(conn: Any) -> bool:
    """True when the sandbox transaction must be rolled back; raise if it is gone."""
    status = conn.info.transaction_status
    if status == _IDLE:
        raise SandboxError(_COMMITTED)
    if status not in (_INTRANS, _INERROR):
        raise psycopg.OperationalError(f"sandbox connection in state {status.name}")
    return True


def _end_action(conn: Any, failed: bool) -> bytes:
    """The statement ending a borrow's savepoint."""
    status = conn.info.transaction_status
    if status == _IDLE:
        raise SandboxError(_COMMITTED)
    return _ROLLBACK_TO if failed or status == _INERROR else _RELEASE


class _SandboxMixin:
    """What Sandbox and AsyncSandbox share: options, one sandbox per pool, tokens for the middleware."""

    _tokens: dict[str, weakref.ReferenceType[Any]]
    _instances: ClassVar[weakref.WeakKeyDictionary[Any, Any]]

    def __init__(
        self,
        pool: Any,
        *,
        mode: Mode = Mode.MANUAL,
        isolation: IsolationLevel | str | None = None,
        ownership_timeout: float | None = 120.0,
        ownership_log: int | str | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(pool, mode=mode, ownership_timeout=ownership_timeout,  # type: ignore[call-arg]
                         ownership_log=ownership_log, label=label)  # fmt: skip
        self._isolation = _isolation(isolation)
        self._tokens = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = weakref.WeakKeyDictionary()

    @classmethod
    def for_pool(cls, pool: Any, **options: Any) -> Self:
        """The pool's one sandbox (made with ``options`` the first time): tests and app share it."""
        sb = cls._instances.get(pool)
        if sb is None:
            sb = cls._instances[pool] = cls(pool, **options)
        return sb

    def token(self, owner: Any) -> str:
        """A random token that lets an HTTP request join ``owner``'s sandbox (see the middleware)."""
        _check_identity("owner", owner)
        for tok, ref in self._tokens.items():
            if ref() is owner:
                return tok
        tok = secrets.token_urlsafe(32)
        self._tokens = {t: r for t, r in self._tokens.items() if r() is not None}
        self._tokens[tok] = weakref.ref(owner)
        return tok

    def owner_for_token(self, token: str | None) -> Any:
        """The owner a token names, or None (unknown, forged, or its owner is gone)."""
        if not token:
            return None
        ref = self._tokens.get(token)
        return ref() if ref is not None else None


class Sandbox(_SandboxMixin, Ownership[psycopg.Connection[Any]]):
    """Transactional test isolation over a threaded :class:`fastpool.Pool`; see the module docstring."""

    def checkout(
        self, *, caller: Any = None, ownership_timeout: float | None = _DEFAULT, sandbox: bool = True,
        isolation: IsolationLevel | str | None = None,
    ) -> Status:  # fmt: skip
        """Check out and ``BEGIN`` (``sandbox=False``: a plain ownership checkout, no transaction)."""
        data = _Boxed(sandbox, _isolation(isolation) or self._isolation)
        return self._checkout(caller, ownership_timeout, data)

    def start_owner(
        self, *, allow_current: bool = True, shared: bool = False, ownership_timeout: float | None = _DEFAULT,
        isolation: IsolationLevel | str | None = None, name: str | None = None,
    ) -> Any:  # fmt: skip
        """Start an owner handle in its own sandbox transaction; ``stop()`` rolls it back."""
        handle = OwnerHandle(self, name)
        data = _Boxed(True, _isolation(isolation) or self._isolation)
        self._start(handle, allow_current, shared, ownership_timeout, data)
        return handle

    def unboxed_run(self, fn: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run ``fn(conn)`` on a separate pool connection, outside every sandbox; it commits.

        Unlike Ecto's, this does not check the caller's sandbox in first (that
        would silently roll it back); it needs one spare connection in the pool.
        """
        with self._pool.connection() as conn:
            return fn(conn)

    @contextmanager
    def connection(
        self, *, caller: Any = None, timeout: float | None = None
    ) -> Iterator[psycopg.Connection[Any]]:
        """Borrow the sandbox connection; the block is a savepoint (rolled back on an exception)."""
        with self._borrow(caller, timeout) as rec:
            conn = rec.conn
            if not _boxed(rec):
                yield conn
                return
            conn.execute(_SAVEPOINT, prepare=False)
            try:
                yield conn
            except BaseException:
                if not conn.closed:
                    try:
                        conn.execute(_end_action(conn, True), prepare=False)
                    except psycopg.Error:
                        pass  # the block's exception says more
                raise
            conn.execute(_end_action(conn, False), prepare=False)

    def _post(self, conn: Any, data: Any) -> None:
        if data is None:
            data = _Boxed(True, self._isolation)
        if data.boxed:
            _begin_check(conn)
            if data.isolation is not None:
                conn.isolation_level = data.isolation  # the pool's reset restores it at return
            psycopg.Transaction(conn).__enter__()  # psycopg now forbids commit()/rollback()

    def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if reason != "checkin" or not (data is None or data.boxed):
            return  # disconnect/stop: no SQL, the connection is closed
        try:
            _checkin_action(conn)
            conn.execute(_CHECKIN_SQL, prepare=False)
        finally:
            conn._num_transactions = 0  # the transaction we entered in _post is over

    def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        if data is None:
            data = _Boxed(True, self._isolation)
        return super()._checkout(caller, ownership_timeout, data)


class AsyncSandbox(_SandboxMixin, AsyncOwnership[psycopg.AsyncConnection[Any]]):
    """The asyncio form of :class:`Sandbox`, over a :class:`fastpool.AsyncPool`."""

    async def checkout(
        self, *, caller: Any = None, ownership_timeout: float | None = _DEFAULT, sandbox: bool = True,
        isolation: IsolationLevel | str | None = None,
    ) -> Status:  # fmt: skip
        """Check out and ``BEGIN``; see ``Sandbox.checkout``."""
        data = _Boxed(sandbox, _isolation(isolation) or self._isolation)
        return await self._checkout(caller, ownership_timeout, data)

    def start_owner(
        self, *, allow_current: bool = True, shared: bool = False, ownership_timeout: float | None = _DEFAULT,
        isolation: IsolationLevel | str | None = None, name: str | None = None,
    ) -> _StartOwner[Any]:  # fmt: skip
        """``await``/``async with`` it for an owner handle in its own sandbox transaction."""
        data = _Boxed(True, _isolation(isolation) or self._isolation)
        return _StartOwner(self, (allow_current, shared, ownership_timeout, name, data))

    async def unboxed_run(self, fn: Callable[[psycopg.AsyncConnection[Any]], Any]) -> Any:
        """Run ``fn(conn)`` (sync or async) on a separate pool connection, outside every sandbox."""
        async with self._pool.connection() as conn:
            return await _maybe_await(fn(conn))

    def connection(self, *, caller: Any = None, timeout: float | None = None) -> Any:
        """``async with sb.connection() as conn``: a savepoint; see ``Sandbox.connection``."""
        return self._boxed_connection(caller, timeout)

    @asynccontextmanager
    async def _boxed_connection(self, caller: Any, timeout: float | None) -> AsyncIterator[Any]:
        async with self._borrow(caller, timeout) as rec:
            conn = rec.conn
            if not _boxed(rec):
                yield conn
                return
            await conn.execute(_SAVEPOINT, prepare=False)
            try:
                yield conn
            except BaseException:
                if not conn.closed:
                    try:
                        await conn.execute(_end_action(conn, True), prepare=False)
                    except psycopg.Error:
                        pass
                raise
            await conn.execute(_end_action(conn, False), prepare=False)

    async def _post(self, conn: Any, data: Any) -> None:
        if data is None:
            data = _Boxed(True, self._isolation)
        if data.boxed:
            _begin_check(conn)
            if data.isolation is not None:
                await conn.set_isolation_level(data.isolation)
            await psycopg.AsyncTransaction(conn).__aenter__()

    async def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if reason != "checkin" or not (data is None or data.boxed):
            return
        try:
            _checkin_action(conn)
            await conn.execute(_CHECKIN_SQL, prepare=False)
        finally:
            conn._num_transactions = 0

    async def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        if data is None:
            data = _Boxed(True, self._isolation)
        return await super()._checkout(caller, ownership_timeout, data)


def _boxed(rec: _Checkout) -> bool:
    return rec.data is None or bool(rec.data.boxed)


# ---------------------------------------------------------------------------------------------
# HTTP middleware
# ---------------------------------------------------------------------------------------------


class _ScopedBody:
    """A WSGI response body that keeps the request's allowance until the server closes it."""

    def __init__(self, body: Iterable[bytes], scope: Any) -> None:
        self._body = body
        self._scope = scope

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            scope, self._scope = self._scope, None
            if scope is not None:
                scope.__exit__(None, None, None)


def wsgi_middleware(app: Callable[..., Any], sandbox: Sandbox, header: str = "x-fastpool-sandbox") -> Any:
    """Wrap a WSGI app: a request carrying a test's token in ``header`` joins that test's sandbox.

    The request's thread is allowed on the owner's connection for the
    request (``allow_scope``), including the iteration of the response body.
    Requests without a token, or with an unknown one, run unchanged.
    """
    key = "HTTP_" + header.upper().replace("-", "_")

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        owner = sandbox.owner_for_token(environ.get(key))
        if owner is None:
            return app(environ, start_response)
        scope = sandbox.allow_scope(owner)
        scope.__enter__()
        try:
            body = app(environ, start_response)
        except BaseException:
            scope.__exit__(*sys.exc_info())
            raise
        return _ScopedBody(body, scope)

    return middleware


def asgi_middleware(app: Callable[..., Any], sandbox: Sandbox | AsyncSandbox,
                    header: str = "x-fastpool-sandbox") -> Any:  # fmt: skip
    """Wrap an ASGI app: an HTTP or WebSocket request carrying a test's token joins its sandbox."""
    name = header.lower().encode("latin-1")

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        owner = None
        if scope.get("type") in ("http", "websocket"):
            for k, v in scope.get("headers") or ():
                if k == name:
                    owner = sandbox.owner_for_token(v.decode("latin-1"))
                    break
        if owner is None:
            await app(scope, receive, send)
            return
        with sandbox.allow_scope(owner):
            await app(scope, receive, send)

    return middleware
