"""Fork safety: a child never uses, closes or sends on its parent's connections, and gets its own.

Real ``os.fork()`` (and multiprocessing's fork start method) against the real
server, on both builds of the core; the gunicorn ``--preload`` test is in
``test_gunicorn.py``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import fastpool

from .conftest import backends, wait_until

pytestmark = [pytest.mark.db, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")]


@pytest.fixture(autouse=True)
def _forking_is_expected() -> Iterator[None]:
    with warnings.catch_warnings():  # the pool's worker threads make CPython warn about fork()
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def in_child(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Fork; run ``fn`` in the child and return (the child's exit status, what ``fn`` returned)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its result goes through the pipe
        os.close(r)
        code = 0
        try:
            out = {"ok": fn()}
        except BaseException as exc:
            out, code = {"error": repr(exc)}, 1
        os.write(w, json.dumps(out).encode())
        os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(b"".join(chunks) or b"{}")


def tagged(conn: Any, tag: str) -> int:
    """Run a query whose answer carries ``tag``; fail if the answer is someone else's."""
    got, pid = conn.execute("SELECT %s::text, pg_backend_pid()", (tag,)).fetchone()
    assert got == tag, f"sent {tag}, got {got}"
    return int(pid)


def test_child_gets_its_own_connections_and_the_parent_keeps_its(
    make_pool: Any, admin: Any, app_name: str
) -> None:
    pool = make_pool(min_size=2, max_size=2)
    parent_pids = backends(admin, app_name)
    assert len(parent_pids) == 2
    errors: list[BaseException] = []
    done = threading.Event()

    def parent_load() -> None:  # the parent keeps querying while the child runs
        try:
            i = 0
            while not done.is_set():
                with pool.connection() as conn:
                    assert tagged(conn, f"parent-{i}") in parent_pids
                i += 1
        except BaseException as exc:
            errors.append(exc)

    def child() -> list[int]:
        pids = set()
        for i in range(100):
            with pool.connection() as conn:
                pids.add(tagged(conn, f"child-{i}"))
        pool.close()  # must not end the parent's sessions
        return sorted(pids)

    t = threading.Thread(target=parent_load)
    t.start()
    try:
        code, out = in_child(child)
    finally:
        done.set()
        t.join(10)
    assert code == 0, out
    assert not errors, errors
    child_pids = set(out["ok"])
    assert child_pids and not child_pids & parent_pids, "the child used a connection of the parent"
    # the parent's sessions are untouched; the child's end once their backends have exited
    assert parent_pids <= backends(admin, app_name), "the parent's sessions are untouched"
    assert wait_until(lambda: backends(admin, app_name) == parent_pids), "the child's sessions ended"
    for i in range(5):
        with pool.connection() as conn:
            assert tagged(conn, f"after-{i}") in parent_pids


def test_fork_inside_a_borrow(make_pool: Any) -> None:
    pool = make_pool(min_size=1, max_size=2)
    with pool.connection() as conn:
        mine = tagged(conn, "before")

        def child() -> int:
            try:
                conn.execute("SELECT 1")
            except psycopg.OperationalError:
                pass  # the inherited connection is gone here: nothing reached the parent's session
            else:
                raise AssertionError("the child could use its parent's connection")
            with pool.connection() as other:
                return tagged(other, "child")

        code, out = in_child(child)
        assert code == 0, out
        assert out["ok"] != mine
        assert tagged(conn, "still-mine") == mine, "the parent's borrowed connection works on"
    assert pool.stats()["in_use"] == 0


def test_asyncio_pool_across_a_fork(build: str, dsn: str, app_name: str, admin: Any) -> None:
    loop = asyncio.new_event_loop()
    pool = fastpool.AsyncPool(dsn, min_size=1, max_size=2, kwargs={"application_name": app_name})

    async def use(tag: str) -> int:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT %s::text, pg_backend_pid()", (tag,))
            got, pid = await cur.fetchone()  # type: ignore[misc]
            assert got == tag
            return int(pid)

    try:
        mine = loop.run_until_complete(use("parent"))
        code, out = in_child(lambda: asyncio.run(use("child")))  # the child's own loop and connection
        assert code == 0, out
        assert out["ok"] != mine
        assert loop.run_until_complete(use("parent-again")) in backends(admin, app_name)
    finally:
        loop.run_until_complete(pool.close())
        loop.close()


_MP_POOL: Any = None


def _mp_worker(q: Any) -> None:  # pragma: no cover - runs in the child process
    with _MP_POOL.connection() as conn:
        q.put(tagged(conn, "mp-child"))
    _MP_POOL.close()


def test_multiprocessing_fork_context(make_pool: Any, admin: Any, app_name: str) -> None:
    global _MP_POOL
    _MP_POOL = make_pool(min_size=1, max_size=2)
    parent_pids = backends(admin, app_name)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_mp_worker, args=(q,)) for _ in range(3)]
    for p in procs:
        p.start()
    got = {q.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(got) == 3 and not got & parent_pids
    with _MP_POOL.connection() as conn:
        assert tagged(conn, "parent") in parent_pids
    _MP_POOL = None
