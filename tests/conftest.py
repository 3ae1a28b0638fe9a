"""Shared fixtures: the two core builds, and a PostgreSQL server to test against.

The database comes from ``FASTPOOL_TEST_DSN``; else the local server
(``host=127.0.0.1 dbname=test user=postgres``); else a throwaway cluster
started from the PostgreSQL binaries found on the machine; else the DB tests
skip with the reason.  With ``CI=true`` a missing database fails the run.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any, NoReturn

import psycopg
import pytest
import pytest_asyncio

import fastpool
from fastpool import _core_build
from fastpool._bench.shapes import LOCAL_DSN

from .acompat import run_all as run_threads
from .acompat import wait_until
from .resources import make
from .resources_async import ctx, make_async

__all__ = ["core_config", "ctx", "make", "make_async", "new_core", "run_threads", "wait_until"]

#: the builds that build-parametrized tests run on: both, unless ``FASTPOOL_TEST_BUILDS`` names
#: some (CI's wheel suites run the compiled build only: the pure build is the same source, and
#: the main suite runs it)
BUILDS = tuple(b.strip() for b in os.environ.get("FASTPOOL_TEST_BUILDS", "c,python").split(",") if b.strip())
if not BUILDS or set(BUILDS) - {"c", "python"}:
    raise RuntimeError(f"FASTPOOL_TEST_BUILDS must name c and/or python, got {BUILDS}")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def compiled_expected() -> bool:
    """True when the compiled core must be importable in this run."""
    if _flag("FASTPOOL_NO_EXTENSIONS"):
        return False
    return _flag("FASTPOOL_REQUIRE_EXTENSIONS") or _flag("CI")


def load_build(name: str) -> ModuleType:
    """Import a build of the core, failing (not skipping) if a required one is missing."""
    try:
        return _core_build.load(name)  # type: ignore[arg-type]
    except ImportError as exc:
        if name == "c" and compiled_expected():
            pytest.fail(f"the compiled core should have loaded and did not: {exc}")
        pytest.skip(f"compiled core not built: {exc}")


def core_config(**kw: Any) -> Any:
    """A validated ``PoolConfig`` from the core's own words (``lifo=False`` for FIFO...); what is
    not given is off, as the core's own defaults were (no lifetime, idle timeout or check)."""
    from fastpool._settings import PoolConfig

    lifo = kw.pop("lifo", True)
    for off in ("max_lifetime", "idle_timeout", "verify_after"):
        kw.setdefault(off, None)
    if kw.get("verify_after", 0.0) is None:
        kw["verify_after"] = 1e12  # (the core's "never"; the pools always have a number)
    return PoolConfig(queue_mode="lifo" if lifo else "fifo", **kw)


def new_core(m: ModuleType, max_size: int = 4, seed: int = 0, **kw: Any) -> Any:
    """A core of build ``m`` with these options (``PoolCore`` takes a validated config)."""
    return m.PoolCore(core_config(max_size=max_size, **kw), seed)


@pytest.fixture(params=BUILDS, ids=[f"core={t}" for t in BUILDS])
def core_mod(request: pytest.FixtureRequest) -> ModuleType:
    """One build of the core module (the test runs once per build)."""
    return load_build(request.param)


@pytest.fixture(params=BUILDS, ids=[f"core={t}" for t in BUILDS])
def build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the pools built in this test use one build of the core."""
    mod = load_build(request.param)
    monkeypatch.setattr(_core_build, "core", mod)
    return str(request.param)


# -- database ------------------------------------------------------------------------


def _try_connect(dsn: str) -> str | None:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except Exception as exc:
        return str(exc).strip().splitlines()[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> str:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else []
    )
    if not bins:
        raise RuntimeError("no PostgreSQL binaries (initdb) found")
    return os.path.dirname(bins[-1])  # type: ignore[type-var]


class _Throwaway:
    """A PostgreSQL cluster in a temp dir, run as a non-root user when we are root.

    With ``standby_of``, a streaming standby of that cluster (``pg_basebackup -R``)
    instead of a new one.
    """

    def __init__(self, standby_of: _Throwaway | None = None) -> None:
        self.bindir = _pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="fastpool-pg-")
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = "postgres"
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                user, pw = "nobody", pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]
        data = os.path.join(self.dir, "data")
        if standby_of is None:
            self._run([f"{self.bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
        else:  # a copy of the primary that follows it (standby.signal and primary_conninfo)
            primary = f"host=127.0.0.1 port={standby_of.port} user=postgres"
            backup = [f"{self.bindir}/pg_basebackup", "-D", data, "-d", primary, "-c", "fast"]
            self._run([*backup, "-R", "-X", "stream"])
        with open(os.path.join(data, "postgresql.auto.conf"), "a") as f:  # kept across restarts
            f.write(f"port = {self.port}\nunix_socket_directories = '{self.dir}'\n")
            f.write("listen_addresses = '127.0.0.1'\nfsync = off\n")
        self._run([f"{self.bindir}/pg_ctl", "-D", data, "-l", f"{self.dir}/log", "-w", "start"])
        self.data = data
        if standby_of is None:
            with psycopg.connect(
                f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres", autocommit=True
            ) as c:
                c.execute("CREATE DATABASE test")
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=test user=postgres"

    def promote(self) -> None:
        """Promote a standby to a primary; return once it accepts writes."""
        self._run([f"{self.bindir}/pg_ctl", "-D", self.data, "-w", "promote"])

    def restart(self) -> None:
        """Restart the server (fast shutdown: every session is terminated)."""
        self._run(
            [f"{self.bindir}/pg_ctl", "-D", self.data, "-l", f"{self.dir}/log", "-m", "fast", "-w", "restart"]
        )

    def down(self) -> None:
        """Stop the server at once (immediate shutdown), keeping its data for ``up``."""
        self._run([f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])

    def up(self) -> None:
        """Start the server again after ``down``; return when it accepts connections."""
        self._run([f"{self.bindir}/pg_ctl", "-D", self.data, "-l", f"{self.dir}/log", "-w", "start"])

    def is_down(self) -> bool:
        """True when the server is not running."""
        res = subprocess.run(
            [*self.prefix, f"{self.bindir}/pg_ctl", "-D", self.data, "status"],
            capture_output=True,
            check=False,
        )
        return res.returncode != 0

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(self.prefix + cmd, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        """Stop the server if it runs, and delete the cluster."""
        try:
            if not self.is_down():
                self._run([f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A DSN of a reachable PostgreSQL server (see the module docstring)."""
    reasons = []
    env = os.environ.get("FASTPOOL_TEST_DSN")
    cluster = None
    if env:
        err = _try_connect(env)
        if err is None:
            yield env
            return
        reasons.append(f"FASTPOOL_TEST_DSN unreachable: {err}")
    else:
        err = _try_connect(LOCAL_DSN) if not _flag("FASTPOOL_TEST_NO_LOCAL") else "skipped by request"
        if err is None:
            yield LOCAL_DSN
            return
        reasons.append(f"local server ({LOCAL_DSN}): {err}")
        try:
            cluster = _Throwaway()
        except Exception as exc:
            reasons.append(f"throwaway cluster: {exc}")
    if cluster is not None:
        try:
            yield cluster.dsn
        finally:
            cluster.stop()
        return
    unavailable("no PostgreSQL server for the DB tests: " + "; ".join(reasons))


@pytest.fixture
def many_sessions() -> Iterator[None]:
    """Hold a machine-wide lock while the test opens many sessions at once (the benchmark opens
    about 40): suites that run side by side against one server (CI runs three) take turns, and
    together stay under its ``max_connections``."""
    import fcntl

    with open(os.path.join(tempfile.gettempdir(), "fastpool-tests-many-sessions.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[_Throwaway]:
    """A private throwaway cluster that a test may restart (skips without binaries; fails under CI)."""
    try:
        cluster = _Throwaway()
    except Exception as exc:
        unavailable(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def replicated() -> Iterator[tuple[_Throwaway, _Throwaway]]:
    """A new primary and its streaming standby, each a throwaway cluster (the test may kill and
    promote them); skips without the binaries, fails under CI."""
    try:
        primary = _Throwaway()
    except Exception as exc:
        unavailable(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        try:
            standby = _Throwaway(standby_of=primary)
        except Exception as exc:
            unavailable(f"cannot start a streaming standby: {exc}")
        try:
            yield primary, standby
        finally:
            standby.stop()
    finally:
        primary.stop()


def unavailable(msg: str) -> NoReturn:
    """Skip for a missing binary or server, with the reason; fail instead under CI."""
    if _flag("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


class _PgBouncer:
    """A pgbouncer process of our own, on a free port, in front of the test database."""

    def __init__(self, dsn: str, pool_mode: str = "transaction") -> None:
        binary = shutil.which("pgbouncer") or next(
            (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
        )
        if binary is None:
            raise RuntimeError("no pgbouncer binary (Debian: apt-get install pgbouncer)")
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
        self.dbname = str(params.get("dbname") or "test")
        self.user = str(params.get("user") or "postgres")
        self.dir = tempfile.mkdtemp(prefix="fastpool-pgbouncer-")
        self.port = free_port()
        prefix: list[str] = []
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            import pwd

            name = "postgres" if "postgres" in {u.pw_name for u in pwd.getpwall()} else "nobody"
            pw = pwd.getpwnam(name)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            prefix = ["runuser", "-u", name, "--"]
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write(f'"{self.user}" ""\n')
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(
                f"[databases]\n{self.dbname} = host={params.get('host') or '127.0.0.1'} "
                f"port={params.get('port') or 5432} dbname={self.dbname} user={self.user}\n"
                f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
                f"auth_type = trust\nauth_file = {self.dir}/userlist.txt\npool_mode = {pool_mode}\n"
                "max_client_conn = 500\ndefault_pool_size = 4\n"
                "ignore_startup_parameters = extra_float_digits\n"
                f"logfile = {self.dir}/pgbouncer.log\npidfile = {self.dir}/pgbouncer.pid\n"
            )
        for name in ("userlist.txt", "pgbouncer.ini"):
            if prefix:
                os.chown(os.path.join(self.dir, name), pw.pw_uid, pw.pw_gid)
        self.proc = subprocess.Popen(
            [*prefix, binary, ini], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while _try_connect(self.dsn) is not None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"pgbouncer did not start: {err.strip()[-500:]}")
            time.sleep(0.05)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={self.dbname} user={self.user}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pgbouncer(dsn: str) -> Iterator[_PgBouncer]:
    """A pgbouncer in transaction mode in front of the test database (skips without the binary)."""
    try:
        bouncer = _PgBouncer(dsn)
    except Exception as exc:
        unavailable(f"cannot start pgbouncer: {exc}")
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection outside any pool, for inspecting the server."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_name() -> str:
    """A unique application_name, to find a pool's backends in pg_stat_activity."""
    return f"fastpool-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def table(admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A new table ``(id serial PRIMARY KEY, v text)``, dropped at the end."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, v text)")
    yield name
    admin.execute(f"DROP TABLE IF EXISTS {name}")


def count_rows(admin: psycopg.Connection[Any], table: str) -> int:
    """The number of rows in ``table``."""
    return int(admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def backends(admin: psycopg.Connection[Any], app: str) -> set[int]:
    """The pids of the server backends whose application_name is ``app``."""
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def make_pool(build: str, dsn: str, app_name: str) -> Iterator[Any]:
    """Build ``fastpool.Pool`` objects on the test's build; all are closed at the end."""
    pools: list[fastpool.BasePool[Any]] = []

    def make(**kw: Any) -> fastpool.Pool:
        kwargs = dict(kw.pop("kwargs", {}))
        kwargs.setdefault("application_name", app_name)
        kw.setdefault("acquire_timeout", 10.0)
        pool = fastpool.Pool(kw.pop("conninfo", dsn), kwargs=kwargs, **kw)
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        p.close(timeout=1.0)


@pytest_asyncio.fixture
async def make_pool_async(build: str, dsn: str, app_name: str) -> AsyncIterator[Any]:
    """``await make_pool_async(**options)``: an ``AsyncPool`` on the test's build, opened unless
    ``open=False`` (eagerly, as the threaded ``Pool`` opens in its constructor); all are closed at
    the end."""
    pools: list[fastpool.AsyncPool] = []

    async def make(**kw: Any) -> fastpool.AsyncPool:
        kwargs = dict(kw.pop("kwargs", {}))
        kwargs.setdefault("application_name", app_name)
        kw.setdefault("acquire_timeout", 10.0)
        p = fastpool.AsyncPool(kw.pop("conninfo", dsn), kwargs=kwargs, **kw)
        pools.append(p)
        if kw.get("open", True):
            await p.open()
        return p

    yield make
    for p in pools:
        await p.close(timeout=1.0)


@pytest_asyncio.fixture
async def make_apg(build: str, dsn: str, app_name: str) -> AsyncIterator[Any]:
    """``await make_apg(**options)``: an ``AsyncPool(driver="asyncpg")`` on the test's build, its
    connections named ``app_name``, opened unless ``open=False``; all are closed at the end."""
    pools: list[Any] = []

    async def make(**kw: Any) -> Any:
        kwargs = dict(kw.pop("kwargs", {}))
        settings = dict(kwargs.pop("server_settings", {}))
        settings.setdefault("application_name", app_name)
        kwargs["server_settings"] = settings
        kw.setdefault("acquire_timeout", 10.0)
        p = fastpool.AsyncPool(kw.pop("conninfo", dsn), driver="asyncpg", kwargs=kwargs, **kw)
        pools.append(p)
        if kw.get("open", True):
            await p.open()
        return p

    yield make
    for p in pools:
        await p.close(timeout=1.0)


@pytest_asyncio.fixture
async def make_dropin(build: str, dsn: str, app_name: str) -> AsyncIterator[Any]:
    """``await make_dropin(**create_pool_options)``: a ``fastpool.asyncpg`` pool on the test's
    build (``min_size=1, max_size=4`` unless given), its connections named ``app_name``, opened
    with ``await`` unless ``open=False``; each is closed at the end (terminated if that hangs)."""
    from fastpool.asyncpg import create_pool

    pools: list[Any] = []

    async def make(*, open: bool = True, **kw: Any) -> Any:
        settings = dict(kw.pop("server_settings", {}))
        settings.setdefault("application_name", app_name)
        kw.setdefault("min_size", 1)
        kw.setdefault("max_size", 4)
        p = create_pool(kw.pop("dsn", dsn), server_settings=settings, **kw)
        pools.append(p)
        if open:
            await p
        return p

    yield make
    for p in pools:
        try:
            await asyncio.wait_for(p.close(), 5.0)
        except (asyncio.TimeoutError, Exception):
            p.terminate()


def sqlalchemy_url(dsn: str, drivername: str) -> Any:
    """The SQLAlchemy URL (``drivername``: ``postgresql+psycopg``, ``postgresql+asyncpg``) of the
    libpq DSN ``dsn``: the test's own database, whatever it is."""
    import sqlalchemy as sa
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    return sa.URL.create(
        drivername,
        username=p.get("user"),
        password=p.get("password"),
        host=p.get("host"),
        port=int(p["port"]) if p.get("port") else None,
        database=p.get("dbname"),
    )


def check_invariants(pool: fastpool.BasePool[Any]) -> dict[str, Any]:
    """Assert the pool's accounting adds up; return its stats."""
    s = pool.stats()
    assert s["size"] == s["idle"] + s["in_use"] + s["connecting"]
    assert 0 <= s["size"] <= s["max_size"]
    assert min(s["idle"], s["in_use"], s["connecting"], s["waiting"]) >= 0
    if s["waiting"] and not s.get("paused"):
        assert s["idle"] == 0, "a queued waiter implies no idle connection (unless paused)"
    return s


def pytest_report_header(config: pytest.Config) -> str:
    build = {"c": "compiled", "python": "pure Python"}[fastpool.IMPLEMENTATION]
    strict = "; a missing compiled build is a failure" if compiled_expected() else ""
    return f"fastpool: the {build} build is the default here; the tests run on both builds{strict}"
