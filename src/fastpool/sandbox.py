"""Sandbox: each test in its own transaction, rolled back at the end.

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

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._surfaces.sandbox import Sandbox
from ._surfaces.sandbox_async import AsyncSandbox

__all__ = ["AsyncSandbox", "Sandbox", "asgi_middleware", "wsgi_middleware"]


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
