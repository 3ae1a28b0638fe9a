"""The ``fastpool.django`` backend in a real Django project, against the real server.

The project in ``tests/django_project`` (settings, a model, its migration,
views that read, write in ``transaction.atomic`` and fail inside it) runs in a
process of its own on a database of its own: ``migrate``, then 16 threads
making requests through Django's WSGI handler, then ``connection.close()``,
transactions left open and ``transaction.atomic`` on pooled connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .conftest import unavailable

pytestmark = pytest.mark.db

PROJECT = Path(__file__).resolve().parent / "django_project"
MAX_SIZE = 4


def _django_env(dsn: str, dbname: str, app: str) -> dict[str, str]:
    params = conninfo_to_dict(dsn)
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="djproj.settings",
        PYTHONPATH=os.pathsep.join([str(PROJECT), env.get("PYTHONPATH", "")]),
        FASTPOOL_DJANGO_DB=dbname,
        FASTPOOL_DJANGO_APP=app,
        FASTPOOL_DJANGO_MAX=str(MAX_SIZE),
        FASTPOOL_DJANGO_HOST=str(params.get("host", "127.0.0.1")),
        FASTPOOL_DJANGO_PORT=str(params.get("port", "5432")),
        FASTPOOL_DJANGO_USER=str(params.get("user", "postgres")),
        FASTPOOL_DJANGO_ADMIN_DSN=psycopg.conninfo.make_conninfo(dsn, dbname=dbname),
    )
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def django_db(dsn: str, admin: Any) -> Any:
    """A database of the test's own, dropped at the end."""
    try:
        import django
    except ImportError:
        unavailable("Django is not installed (the test extra installs it)")
    if django.VERSION < (5, 1):
        unavailable(f"the backend needs Django 5.1 or later, not {django.get_version()}")
    name = f"fastpool_django_{uuid.uuid4().hex[:10]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        # FORCE ends only the sessions on this database, which is the test's own.
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_django_project_on_the_fastpool_backend(dsn: str, django_db: str) -> None:
    app = f"fastpool-django-{uuid.uuid4().hex[:8]}"
    env = _django_env(dsn, django_db, app)

    made = _run(env, "-m", "django", "makemigrations", "--check", "--dry-run")
    assert made.returncode == 0, f"the project's migrations are out of date:\n{made.stdout}{made.stderr}"
    migrated = _run(env, "-m", "django", "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    assert "Applying shop.0001_initial... OK" in migrated.stdout

    ran = _run(env, "load.py")
    assert ran.returncode == 0, ran.stderr[-4000:]
    r = json.loads(ran.stdout)
    rounds = int(os.environ.get("FASTPOOL_DJANGO_ROUNDS", "20"))
    requests = 16 * rounds

    assert r["pool_class"] == "fastpool.ConnectionPool"
    assert r["errors"] == [], r["errors"][:10]
    assert r["statuses"] == {
        "POST /items/ 201": requests,
        "GET /items/ 200": requests,
        "GET /fail/ 500": requests,
    }
    # 16 threads, at most MAX_SIZE server sessions at any time, all of them reused.
    assert r["max_size"] == MAX_SIZE
    assert 1 <= r["peak_backends"] <= MAX_SIZE, r
    assert 1 <= len(r["pids"]) <= MAX_SIZE, r["pids"]
    assert r["items"] == requests  # every committed write is there
    assert r["rolled_back_rows"] == 0  # every write in a failed atomic block is not
    # connection.close() gives the connection back to the pool (its session stays open).
    assert r["close"] == {
        "available_before": r["close"]["available_before"],
        "available_after": r["close"]["available_before"] + 1,
        "session_alive": True,
        "wrapper_connection": True,
    }
    assert r["left_open_rows"] == 0  # a transaction left open at close() is rolled back
    assert r["atomic"] == [1, 0]
    stats = r["final_stats"]
    assert stats["pool_size"] <= MAX_SIZE
    assert stats["requests_errors"] == 0
    assert stats["pool_available"] == stats["pool_size"]  # nothing left borrowed
    assert r["backends_after_close_pool"] == 0  # close_pool() closes every session
    print(
        f"\nDjango on fastpool.django: {3 * requests} requests from 16 threads, 0 errors, "
        f"peak {r['peak_backends']} server sessions (max_size {MAX_SIZE}), {len(r['pids'])} pids used"
    )
