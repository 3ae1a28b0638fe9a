"""The sandbox's HTTP middleware: a real WSGI server, and ASGI requests as a server makes them."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from fastpool import AsyncPool, AsyncSandbox, OwnershipError, Sandbox
from fastpool.sandbox import asgi_middleware, wsgi_middleware

from .conftest import count_rows

pytestmark = pytest.mark.db


# -- HTTP: a real WSGI server in a thread, the test's token in a header ------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _make_app(db: Any, table: str) -> Any:
    """A small app whose handler writes through ``db`` (the pool in production, the Sandbox here)."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            with db.connection() as conn:
                if environ["REQUEST_METHOD"] == "POST":
                    v = environ["PATH_INFO"].strip("/")
                    conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (v,))
                rows = [r[0] for r in conn.execute(f"SELECT v FROM {table} ORDER BY id")]
        except OwnershipError as exc:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [str(exc).encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(rows).encode()]

    return app


@pytest.fixture
def server(make_pool: Any, table: str) -> Iterator[tuple[Sandbox, str]]:
    sb = Sandbox(make_pool(max_size=4))
    httpd = make_server("127.0.0.1", 0, wsgi_middleware(_make_app(sb, table), sb),
                        server_class=_ThreadingWSGIServer, handler_class=_Quiet)  # fmt: skip
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield sb, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _call(url: str, token: str | None, method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        req.add_header("X-Fastpool-Sandbox", token)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_two_concurrent_tests_through_a_real_web_app(server: Any, admin: Any, table: str) -> None:
    # the end-to-end test: two "tests" run at once against one app, each sees only its own rows
    sb, url = server
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def one_test(tag: str) -> None:
        with sb.start_owner(name=tag) as owner:
            token = owner.token()
            for i in range(3):
                assert _call(f"{url}/{tag}-{i}", token, "POST")[0] == 200
                barrier.wait(10)  # interleave the two tests' requests
            with sb.connection() as conn:  # the test itself sees what the app wrote
                mine = [r[0] for r in conn.execute(f"SELECT v FROM {table} ORDER BY id")]
            results[tag] = (_call(url, token)[1], mine)

    threads = [threading.Thread(target=one_test, args=(tag,)) for tag in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for tag in ("left", "right"):
        expected = [f"{tag}-{i}" for i in range(3)]
        assert results[tag] == (expected, expected)
    assert count_rows(admin, table) == 0  # nothing left behind


def test_middleware_token_and_forgery(server: Any, admin: Any, table: str) -> None:
    sb, url = server
    with sb.start_owner() as owner:
        with sb.connection() as conn:
            conn.execute(f"INSERT INTO {table} (v) VALUES ('uncommitted')")
        assert _call(url, owner.token()) == (200, ["uncommitted"])
        status, body = _call(url, "forged-" + owner.token()[7:])
        assert status == 403 and "cannot find the ownership" in body
        status, _ = _call(url, None)
        assert status == 403
        assert owner.token() == owner.token()  # one token per owner
    status, _ = _call(url, owner.token())  # the owner is gone: its token opens nothing
    assert status == 403
    assert count_rows(admin, table) == 0


def test_asgi_middleware_with_an_async_sandbox(build: str, dsn: str, admin: Any, table: str) -> None:
    # ASGI: the middleware called the way a server calls it, one task per request
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            async with sb.connection() as conn:
                await conn.execute(f"INSERT INTO {table} (v) VALUES ('from-asgi')")
                cur = await conn.execute(f"SELECT count(*) FROM {table}")
                n = (await cur.fetchone())[0]  # type: ignore[index]
            status, body = 200, str(n).encode()
        except OwnershipError:
            status, body = 403, b"no"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def request(mw: Any, token: str | None) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []
        headers = [(b"x-fastpool-sandbox", token.encode())] if token else []
        scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        # a fresh task in a fresh context, as a server's request task (not a child of the test)
        # (a task copies the context it is created in; create_task(context=) is Python 3.11+)
        await contextvars.Context().run(asyncio.get_running_loop().create_task, mw(scope, receive, send))
        return sent[0]["status"], sent[1]["body"]

    async def main() -> None:
        nonlocal sb
        async with AsyncPool(dsn, max_size=3) as pool:
            sb = AsyncSandbox(pool)
            mw = asgi_middleware(app, sb)
            async with sb.start_owner(allow_current=False) as owner:
                tok = owner.token()
                assert await request(mw, tok) == (200, b"1")
                assert await request(mw, tok) == (200, b"2")
                assert await request(mw, "x" * 43) == (403, b"no")
                assert await request(mw, None) == (403, b"no")
            assert count_rows(admin, table) == 0

    sb: Any = None
    asyncio.run(main())
