"""Drive the Django project through its WSGI handler from 16 threads; print what happened as JSON.

Run by ``tests/test_django.py`` in a process of its own (Django's settings are
process-wide), with the project directory as the working directory.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from typing import Any

import django
import psycopg

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproj.settings")
django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from shop.models import Item  # noqa: E402

THREADS = 16
ROUNDS = int(os.environ.get("FASTPOOL_DJANGO_ROUNDS", "20"))
APP = os.environ["FASTPOOL_DJANGO_APP"]
app = WSGIHandler()


def request(method: str, path: str, query: str = "") -> tuple[int, Any]:
    """One request through Django's WSGI handler, as a server would make it."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    status: list[str] = []
    response = app(environ, lambda s, h, *a: status.append(s))
    try:
        body = b"".join(response)
    finally:
        response.close()  # as a WSGI server does: Django's request_finished gives the connection back
    code = int(status[0].split()[0])
    return code, json.loads(body) if body.startswith(b"{") else None


def backends(admin: psycopg.Connection[Any]) -> set[int]:
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,)).fetchall()
    return {r[0] for r in rows}


def main() -> None:
    admin = psycopg.connect(os.environ["FASTPOOL_DJANGO_ADMIN_DSN"], autocommit=True)
    results: dict[str, Any] = {"statuses": {}, "errors": [], "pids": set()}
    lock = threading.Lock()
    done = threading.Event()
    peak = [0]

    def sample() -> None:  # the most server sessions the app held at any one time
        while not done.is_set():
            peak[0] = max(peak[0], len(backends(admin)))
            time.sleep(0.005)

    def worker(n: int) -> None:
        for i in range(ROUNDS):
            for method, path, want in (
                ("POST", "/items/", 201),
                ("GET", "/items/", 200),
                ("GET", "/fail/", 500),
            ):
                try:
                    code, data = request(method, path, f"name=t{n}-{i}")
                except Exception as exc:
                    with lock:
                        results["errors"].append(repr(exc))
                    continue
                with lock:
                    key = f"{method} {path} {code}"
                    results["statuses"][key] = results["statuses"].get(key, 0) + 1
                    if code != want:
                        results["errors"].append(f"{method} {path}: {code} (wanted {want})")
                    if data and "pid" in data:
                        results["pids"].add(data["pid"])

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    pool = connection.pool
    results["pool_class"] = f"{type(pool).__module__}.{type(pool).__name__}"
    results["max_size"] = pool.max_size
    results["peak_backends"] = peak[0]
    results["pids"] = sorted(results["pids"])
    results["items"] = Item.objects.filter(name__startswith="t").count()
    results["rolled_back_rows"] = Item.objects.filter(name="rolled-back").count()

    # connection.close() gives the connection back: its session stays open, the pool has it idle.
    connection.ensure_connection()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    before = pool.get_stats()
    connection.close()
    after = pool.get_stats()
    results["close"] = {
        "available_before": before["pool_available"],
        "available_after": after["pool_available"],
        "session_alive": pid in backends(admin),
        "wrapper_connection": connection.connection is None,
    }

    # A transaction left open at close() is rolled back by the pool, not committed.
    transaction.set_autocommit(False)
    Item.objects.create(name="left-open", backend_pid=0)
    connection.close()
    transaction.set_autocommit(True)
    results["left_open_rows"] = Item.objects.filter(name="left-open").count()
    connection.close()

    # transaction.atomic commits on success, rolls back on error, on pooled connections.
    with transaction.atomic():
        Item.objects.create(name="atomic-ok", backend_pid=0)
    try:
        with transaction.atomic():
            Item.objects.create(name="atomic-err", backend_pid=0)
            raise ValueError
    except ValueError:
        pass
    results["atomic"] = [Item.objects.filter(name=n).count() for n in ("atomic-ok", "atomic-err")]
    connection.close()
    results["final_stats"] = pool.get_stats()
    connection.close_pool()
    time.sleep(0.2)
    results["backends_after_close_pool"] = len(backends(admin))
    admin.close()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
