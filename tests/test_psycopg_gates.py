"""The psycopg driver's borrow-path gates, on both builds, on real connections.

``PsycopgGates`` and ``ClientState`` (``fastpool._drivers.psycopg_gates``) are
written once and compiled like the core; both builds must decide alike on
every client setting a borrower can change, on a terminated backend and on
every server role.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from fastpool import _core_build

from .conftest import load_build, new_core


def _gates(build: str) -> Any:
    load_build(build)  # (fails, or skips, as the core's build would)
    return _core_build.load_module("fastpool._drivers.psycopg_gates", build)  # type: ignore[arg-type]


class _Recorder:
    """What the psycopg fast path calls back into, recorded."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.calls: list[str] = []

    def _release_block(self, e: Any, ok: bool) -> None:
        self.calls.append("release_block")
        e.conn.rollback()
        self.core.release(e, 0.0)

    def _close_doomed(self) -> None:
        self.calls.append("close_doomed")
        self.core.take_doomed()


def _psycopg_side(build: str, dsn: str, app: str) -> tuple[Any, Any, Any, Any]:
    mod = load_build(build)
    g = _gates(build)
    conn = psycopg.connect(dsn, application_name=app)
    core = new_core(mod, 1)
    pool = _Recorder(core)
    fast = mod.FastPath(
        weakref.ref(pool), core, mod.Lock(), g.PsycopgGates(0), mod.GET_GATE, mod.PUT_GATE, True
    )
    assert core.add_connects(1) == 1
    core.connect_done(conn, 0.0, g.ClientState(conn, 0, g.ROLE_ANY))
    return g, conn, pool, fast


def _tweaks() -> list[tuple[str, Any, Any]]:
    """(what, change, undo) on a connection: every client setting the return path must notice."""

    def noticer(diag: Any) -> None:
        pass

    return [
        ("autocommit", lambda c: setattr(c, "autocommit", True), lambda c: setattr(c, "autocommit", False)),
        ("read_only", lambda c: setattr(c, "read_only", True), lambda c: setattr(c, "read_only", None)),
        ("deferrable", lambda c: setattr(c, "deferrable", True), lambda c: setattr(c, "deferrable", None)),
        (
            "isolation_level",
            lambda c: setattr(c, "isolation_level", psycopg.IsolationLevel.SERIALIZABLE),
            lambda c: setattr(c, "isolation_level", None),
        ),
        ("row_factory", lambda c: setattr(c, "row_factory", dict_row), None),
        ("cursor_factory", lambda c: setattr(c, "cursor_factory", psycopg.ClientCursor), None),
        ("prepare_threshold", lambda c: setattr(c, "prepare_threshold", None), None),
        (
            "notice handler",
            lambda c: c.add_notice_handler(noticer),
            lambda c: c.remove_notice_handler(noticer),
        ),
        ("transaction", lambda c: c.execute("SELECT 1"), lambda c: c.rollback()),
    ]


def _drive_psycopg_gates(build: str, dsn: str, app: str, admin: psycopg.Connection[Any]) -> list[Any]:
    """What one build's psycopg fast path decides: per tweak, the calls to the pool when the
    changed connection comes back, then when the undone one does; then the probe's verdict
    on a connection whose backend was terminated."""
    out: list[Any] = []
    for what, change, undo in _tweaks():
        g, conn, pool, fast = _psycopg_side(build, dsn, app)
        try:
            with fast.connection(None) as got:
                assert got is conn
                assert g.ClientState(conn, 0).same(conn), "a fresh snapshot matches"
                change(conn)
            changed, pool.calls = pool.calls, []
            restored = None
            if undo is not None:
                with fast.connection(None):
                    undo(conn)
                restored = pool.calls
            out.append((what, changed, restored))
        finally:
            conn.close()
    g, conn, pool, fast = _psycopg_side(build, dsn, app)
    try:
        e = pool.core.acquire(1.0)
        out.append(("live", fast.ready(e)))
        pool.core.release(e, 1.0)
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        for _ in range(500):  # the backend's goodbye reaches the socket
            if load_build(build).readable(conn.pgconn.socket):
                break
            time.sleep(0.01)
        e = pool.core.acquire(2.0)
        out.append(("terminated", fast.ready(e)))
    finally:
        conn.close()
    return out


@pytest.mark.db
def test_psycopg_gates_in_lockstep(dsn: str, admin: psycopg.Connection[Any], app_name: str) -> None:
    """PsycopgGates (GET_GATE/PUT_GATE) and ClientState decide alike on both builds, on real connections."""
    load_build("c")
    got = {t: _drive_psycopg_gates(t, dsn, app_name, admin) for t in ("c", "python")}
    assert got["c"] == got["python"]
    for what, changed, restored in got["c"][:-2]:
        assert changed == ["release_block"], f"a changed {what} must take the pool's return path"
        assert restored in (None, []), f"{what} undone: straight back again"
    assert got["c"][-2:] == [("live", True), ("terminated", False)]


class _Reported:
    """What a server last reported, as psycopg's ``pgconn.parameter_status`` gives it."""

    def __init__(self, hot: bytes | None, read_only: bytes | None) -> None:
        self._status = {b"in_hot_standby": hot, b"default_transaction_read_only": read_only}

    def parameter_status(self, name: bytes) -> bytes | None:
        return self._status[name]


@pytest.mark.parametrize("hot", [b"on", b"off", None])
@pytest.mark.parametrize("read_only", [b"on", b"off", None])
def test_both_builds_judge_the_server_role_alike(hot: bytes | None, read_only: bytes | None) -> None:
    c, py = _gates("c"), _gates("python")
    pg = _Reported(hot, read_only)
    expected = {  # libpq's target_session_attrs rules; a server that reports nothing passes
        py.ROLE_ANY: True,
        py.ROLE_READ_WRITE: hot is None or (hot == b"off" and read_only != b"on"),
        py.ROLE_PRIMARY: hot != b"on",
        py.ROLE_READ_ONLY: hot is None or hot == b"on" or read_only == b"on",
        py.ROLE_STANDBY: hot is None or hot == b"on",
    }
    for role, ok in expected.items():
        assert c.role_ok(pg, role) is ok and py.role_ok(pg, role) is ok, (role, hot, read_only)
